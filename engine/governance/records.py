"""Records of processing (GDPR art. 30): ``insight governance report``.

What a data protection officer keeps, from the project file, the policy and the audit
log as they are: the purposes and where each is enforced; per source, the categories of
data (columns, types, which are PII, which are sensitive attributes, the subject's key);
the recipients (alert sinks by kind, the model registry, served apps); retention periods
(said as not configured where none is); the security measures in force; and the requests
on record (subject exports, consent changes) with their request-to-done times against the
legal clocks (GDPR: one month; CCPA: 45 days). Written as JSON and Markdown, atomically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config.project import ProjectConfig
    from engine.workspace import Workspace

GDPR_DAYS = 30
CCPA_DAYS = 45


def _categories(cfg: ProjectConfig, ws: Workspace) -> list[dict[str, Any]]:
    from engine.data.sources import read_schema, source_path

    pii = set(cfg.pii)
    out = []
    for name, src in cfg.sources.items():
        cols: dict[str, str] = dict(src.columns)
        if not cols:
            path = source_path(cfg, name, ws.root)
            if path.exists():
                try:
                    cols = {f.name: str(f.type) for f in read_schema(src, path)}
                except Exception:  # an unreadable file is said, not fatal to the record
                    cols = {}
        key = cfg.entities[src.entity].key if src.entity in cfg.entities else None
        out.append(
            {
                "source": name,
                "kind": src.kind,
                "subject_key": key,
                "columns": cols,
                "pii": sorted(c for c in cols if f"{name}.{c}" in pii),
                "sensitive": sorted(c for c in cols if c in set(cfg.sensitive)),
                "personal": key is not None,
            }
        )
    return out


def _requests(ws: Workspace) -> dict[str, Any]:
    from engine.audit.verify import read_records

    ctl = ws.audit / "control"
    exports, consents = [], []
    if ctl.is_dir():
        for r in read_records(ctl, kind=None):
            if r.get("kind") == "subject_export":
                exports.append(
                    {
                        "kind": "access (export)",
                        "subject_hash": r.get("subject_hash"),
                        "by": r.get("by"),
                        "requested": r.get("time"),
                        "done": r.get("time"),
                        "days_to_done": 0.0,
                        "within_gdpr": True,
                        "within_ccpa": True,
                    }
                )
            elif r.get("kind") == "erasure":
                exports.append(
                    {
                        "kind": "erasure",
                        "request_id": r.get("request_id"),
                        "by": r.get("actor"),
                        "requested": r.get("requested_at"),
                        "done": r.get("done_at"),
                        "days_to_done": r.get("days"),
                        "within_gdpr": bool((r.get("within") or {}).get("gdpr_30d")),
                        "within_ccpa": bool((r.get("within") or {}).get("ccpa_45d")),
                        "stores": len(r.get("touched") or []),
                        "models": r.get("models") or [],
                    }
                )
            elif r.get("kind") == "consent":
                consents.append(
                    {
                        "event": r.get("event"),
                        "purpose": r.get("purpose"),
                        "subject_hash": r.get("subject_hash"),
                        "by": r.get("by"),
                        "time": r.get("time"),
                    }
                )
    from engine.governance.erase import pending

    now = time.time()
    open_ = [
        {"kind": "erasure", "request_id": e.request_id, "requested": e.requested_at,
         "days_open": round((now - e.requested_at) / 86400, 3), "done_steps": e.done}
        for e in pending(ws)
    ]  # fmt: skip
    erased = [x for x in exports if x["kind"] == "erasure"]
    return {
        "open": open_,  # erasures a crash left pending (`insight erase --resume`)
        "closed": exports,
        "consent_changes": consents,
        "erasure": f"{len(erased)} done, {len(open_)} open (`insight erase`)",
        "clocks_days": {"gdpr": GDPR_DAYS, "ccpa": CCPA_DAYS},
    }


def _retention(cfg: ProjectConfig) -> dict[str, Any] | str:
    from engine.governance.retention import APPLIED, periods

    per = periods(cfg)
    if not per:
        return "no retention period configured (governance.retention): nothing expires"
    return {
        c: {"days": d.days, "applied_by": "insight retention apply" if c in APPLIED else "not yet"}
        for c, d in per.items()
    }


def governance_record(cfg: ProjectConfig, ws: Workspace) -> dict[str, Any]:
    from engine.audit.verify import verify
    from engine.governance.enforce import policy_of
    from engine.governance.roles import load_tokens
    from engine.pii import key_fingerprint, load_key

    gov = cfg.governance
    ps = policy_of(cfg)
    purposes = gov.purposes.model_dump()
    where = {
        "training": "snapshot build (allowed?), training rows (consent as of the label time)",
        "serving": "/predict and /explain (consent now), batch scoring (consent at the job)",
        "targeting": "target decide (consent now; never selected without it)",
        "access": "insight subject export (the policy's 'export' use)",
    }
    sinks = [
        {"name": n, "kind": s.type} for n, s in sorted(cfg.monitor.sinks.items())
    ]  # kinds and names only: their secrets live in environment variables
    roles: dict[str, int] = {}
    for v in load_tokens(ws.root).values():
        roles[v["role"]] = roles.get(v["role"], 0) + 1
    audit_ok = verify(ws.audit).ok if ws.audit.is_dir() else True
    return {
        "record": "records of processing (GDPR art. 30)",
        "controller": {"project": cfg.name, "workspace": str(ws.root)},
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "purposes": [
            {"use": use, "purpose": p, "enforced_at": where[use]} for use, p in purposes.items()
        ],
        "consent": (
            {"source": gov.consent.source, "subject": gov.consent.subject}
            if gov.consent
            else "no consent source declared (the workspace's consent log only)"
        ),
        "policy": {"version": ps.version, "files": sorted(ps.files)},
        "categories": _categories(cfg, ws),
        "recipients": {
            "alert_sinks": sinks,
            "model_registry": ws.tracking_uri.split("@")[-1],  # no credentials
            "served_on": f"{cfg.serve.host} (the bound address)",
        },
        "retention": _retention(cfg),
        "security": {
            "pii_hashing": f"HMAC-SHA256 with the workspace key (fingerprint "
            f"{key_fingerprint(load_key(ws.root))}) before features and logs",
            "audit_log": f"hash-chained segments; verify now: {'intact' if audit_ok else 'DAMAGED'}",
            "admin_tokens": {"roles": roles, "stored": "SHA-256 only, compared in constant time"},
            "servers_bind": cfg.serve.host,
        },
        "requests": _requests(ws),
    }


def _markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Records of processing: {r['controller']['project']}",
        "",
        f"Generated {r['generated_at']}; policy version {r['policy']['version']}.",
        "",
        "## Purposes",
        "",
        *[
            f"- **{p['use']}**: `{p['purpose']}`; enforced at {p['enforced_at']}"
            for p in r["purposes"]
        ],
        "",
        "## Categories of data",
        "",
    ]
    for c in r["categories"]:
        lines.append(
            f"- **{c['source']}** ({c['kind']}; subject key: {c['subject_key'] or 'none'}): "
            f"{len(c['columns'])} columns; PII: {', '.join(c['pii']) or 'none'}; sensitive: "
            f"{', '.join(c['sensitive']) or 'none'}"
        )
    rec = r["recipients"]
    sinks = ", ".join(f"{s['name']} ({s['kind']})" for s in rec["alert_sinks"]) or "none"
    lines += [
        "",
        "## Recipients",
        "",
        f"- alert sinks: {sinks}",
        f"- model registry: {rec['model_registry']}",
        f"- served on: {rec['served_on']}",
        "",
        "## Retention",
        "",
        str(r["retention"]),
        "",
        "## Security measures",
        "",
        *[f"- {k}: {v}" for k, v in r["security"].items()],
        "",
        "## Requests",
        "",
        f"- closed: {len(r['requests']['closed'])} ("
        f"{sum(1 for c in r['requests']['closed'] if c['within_gdpr'])} within GDPR's "
        f"{GDPR_DAYS} days, {sum(1 for c in r['requests']['closed'] if c['within_ccpa'])} "
        f"within CCPA's {CCPA_DAYS}); open: {len(r['requests']['open'])}",
        f"- consent changes on record: {len(r['requests']['consent_changes'])}",
        f"- erasure: {r['requests']['erasure']}",
        "",
    ]
    return "\n".join(lines)


def write_record(cfg: ProjectConfig, ws: Workspace) -> tuple[Path, Path]:
    from engine.workspace import atomic_write_bytes

    r = governance_record(cfg, ws)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    out = ws.root / "reports"
    j, m = out / f"governance-{stamp}.json", out / f"governance-{stamp}.md"
    atomic_write_bytes(j, json.dumps(r, indent=2, default=str).encode())
    atomic_write_bytes(m, _markdown(r).encode())
    return j, m
