"""Where the policy meets the data: the decision for a use of personal data, and its consent
obligation applied to the rows (training: as of each label time)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from engine.errors import ConfigError, DataError, PolicyError
from engine.governance.consent import NO_RECORD, WITHDRAWN, ConsentLedger
from engine.governance.policy import Decision, PolicySet, policy_data

if TYPE_CHECKING:
    from engine.config.project import ProjectConfig
    from engine.config.target import TargetProject
    from engine.features.snapshot import Snapshot
    from engine.governance.live import LiveConsent
    from engine.workspace import Workspace

_POLICIES: dict[str, PolicySet] = {}
_LOCK = threading.Lock()


Governed = Union["ProjectConfig", "TargetProject"]  # a project file with governance:


def policy_of(cfg: Governed) -> PolicySet:
    """The project's compiled policy (once per process and policy version)."""
    extra = None
    if cfg.governance.policy is not None:
        p = Path(cfg.governance.policy)
        extra = p if p.is_absolute() else Path(cfg.base_dir) / p
    data = policy_data(cfg)
    texts = ""
    if extra is not None and extra.exists():
        files = sorted(extra.glob("*.rego")) if extra.is_dir() else [extra]
        texts = "".join(f.read_text(encoding="utf-8") for f in files)
    key = f"{extra}|{hash(texts)}|{sorted(data.items())}"
    with _LOCK:
        ps = _POLICIES.get(key)
        if ps is None:
            ps = _POLICIES[key] = PolicySet.load(extra, data)
    return ps


def decide(
    cfg: Governed, action: str, purpose: str, *, root: Path | None = None, **facts: Any
) -> Decision:
    """The decision, raising :class:`PolicyError` when the policy does not allow the use.
    With ``root`` (a workspace), a policy version this workspace has not used before is an
    audit record first (engine.governance.enforce.note_policy)."""
    ps = policy_of(cfg)
    if root is not None:
        note_policy(root, ps)
    d = ps.decide(action, purpose, pii=list(cfg.pii), **facts)
    if not d.allow:
        raise PolicyError(
            f"the governance policy (version {d.policy_version}) does not allow {action} for "
            f"purpose '{purpose}': {d.reason()}. Fix: change the policy "
            "(governance.policy) or the purpose (governance.purposes)."
        )
    return d


def note_policy(root: Path, ps: PolicySet) -> bool:
    """Record a change of policy: when the version in force differs from the one this
    workspace last used, an audit record (control log) names both versions and each file's
    SHA-256, then the new version is kept (``governance/policy.json``). Returns whether it
    changed."""
    import hashlib
    import json
    import time

    from engine.audit import AuditWriter
    from engine.workspace import atomic_write_bytes

    path = root / "governance" / "policy.json"
    try:
        last = json.loads(path.read_text()).get("version")
    except (OSError, ValueError):
        last = None
    if last == ps.version:
        return False
    files = {n: hashlib.sha256(t.encode()).hexdigest() for n, t in sorted(ps.files.items())}
    w = AuditWriter(root / "audit" / "control", writer="policy")
    try:
        w.append(
            [
                {
                    "kind": "policy",
                    "event": "in force" if last is None else "changed",
                    "from": last,
                    "to": ps.version,
                    "files": files,
                    "time": time.time(),
                }
            ]
        )
    finally:
        w.close()
    atomic_write_bytes(path, json.dumps({"version": ps.version, "files": files}).encode())
    return True


def live_consent(cfg: Governed, root: Path) -> LiveConsent:
    """The project's consent source and the workspace's consent log, as one live view."""
    from engine.governance.live import LiveConsent

    c = cfg.governance.consent
    if c is None:
        return LiveConsent(None, None, None, root)
    from engine.data.sources import read_frame, source_path

    cols = [c.subject, c.purpose, c.status, c.time]
    return LiveConsent(
        c, lambda: read_frame(cfg, c.source, root, cols), source_path(cfg, c.source, root), root
    )


def load_ledger(cfg: Governed, root: Path, *, hashed: bool = False) -> ConsentLedger | None:
    """The consent events of the project's consent source (None: none declared); with
    ``hashed``, subjects as the keyed hash PII columns are stored under."""
    c = cfg.governance.consent
    if c is None:
        return None
    from engine.data.sources import read_frame

    led = ConsentLedger.from_frame(
        read_frame(cfg, c.source, root, [c.subject, c.purpose, c.status, c.time]), c
    )
    if hashed:
        from engine.pii import hmac_hex, load_key

        k = load_key(root)
        led = ConsentLedger(
            led.events.assign(subject=[hmac_hex(k, s) for s in led.events["subject"]]),
            led.source,
            led.fingerprint,
        )
    return led


def key_is_hashed(cfg: Governed, key: str) -> bool:
    """Whether the entity key reaches snapshots as its keyed hash (marked PII)."""
    return any(p.split(".", 1)[-1] == key for p in cfg.pii)


def consented_training_rows(
    cfg: ProjectConfig, ws: Workspace, snap: Snapshot, df: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The rows training may use for its purpose, and the exclusion manifest (None when the
    policy sets no consent obligation). Consent is checked as of each row's label time
    (snapshots without label times: their ``label.as_of``, else the build time)."""
    purpose = cfg.governance.purposes.training
    d = decide(cfg, "train", purpose, root=ws.root)
    wanted = d.consent_purposes()
    if not wanted:
        return df, None
    key = snap.manifest.get("entity")
    if not key or key not in df:
        raise ConfigError(
            f"the policy asks for consent to {wanted}, but snapshot {snap.id} has no entity "
            "key column to check it by. Fix: give the label source an entity."
        )
    led = load_ledger(cfg, ws.root, hashed=key_is_hashed(cfg, key))
    if led is None:
        raise ConfigError(
            f"the policy asks for consent to {wanted}, but the project declares no consent "
            "source. Fix: add governance.consent to insight.yaml."
        )
    lt = snap.manifest.get("label_time")
    if lt and lt in df:
        times: Any = df[lt]
    else:
        at = str(snap.manifest.get("label_as_of") or snap.manifest.get("created_at"))
        times = pd.Series(pd.Timestamp(at), index=range(len(df)))
    keep = pd.Series(True, index=df.index)
    counts: dict[str, Any] = {}
    for p in wanted:
        chk = led.check(df[key].to_numpy(), pd.Series(times).to_numpy(), p)
        keep &= chk.allowed
        counts[p] = chk.counts
    out = df[keep.to_numpy()]
    dropped = df.loc[~keep.to_numpy(), key]
    manifest = {
        "purpose": purpose,
        "consent_purposes": wanted,
        "policy_version": d.policy_version,
        "consent_source": led.source,
        "ledger_fingerprint": led.fingerprint,
        "checked_as_of": "label time" if lt and lt in df else "snapshot time",
        "rows": len(df),
        "rows_kept": len(out),
        "rows_excluded": int(len(df) - len(out)),
        "subjects_excluded": int(dropped.nunique()),
        "by_purpose": counts,
        "reasons": [NO_RECORD, WITHDRAWN],
    }
    return out, manifest


@dataclass(frozen=True)
class BatchConsent:
    """What batch scoring checks per row (picklable: it travels to Ray Data's workers):
    the ledger as it was when the job started, the purposes, the key column, the time."""

    ledger: ConsentLedger
    purposes: tuple[str, ...]
    key: str
    at: pd.Timestamp
    policy_version: str

    def reasons(self, subjects: Any) -> list[str | None]:
        subj = list(subjects)
        why: list[str | None] = [None] * len(subj)
        for p in self.purposes:
            chk = self.ledger.current(subj, p, at=self.at)
            for i, r in enumerate(chk.reason):
                if r is not None and why[i] is None:
                    why[i] = f"{r} for '{p}'"
        return why

    def withhold(self, out: pd.DataFrame, subjects: Any) -> pd.DataFrame:
        """``out`` with no score and no decision where consent is missing, and why
        (column ``withheld``)."""
        if subjects is None:
            raise DataError(
                f"consent to {list(self.purposes)} is checked per subject, but the table has "
                f"no '{self.key}' column. Fix: score a table that carries each row's key."
            )
        why = self.reasons(subjects)
        gone = np.array([w is not None for w in why], dtype=bool)
        out = out.copy()
        out["score"] = out["score"].mask(gone)
        out["decision"] = pd.array(out["decision"].to_numpy(), dtype="boolean")
        out.loc[gone, "decision"] = pd.NA
        out["withheld"] = pd.array(why, dtype="string")
        return out


def batch_consent(
    cfg: Governed,
    ws: Workspace,
    key: str | None,
    *,
    hashed: bool,
    action: str = "score",
    purpose: str | None = None,
) -> BatchConsent | None:
    """The consent check of a batch job (scoring: for the serving purpose; targeting: the
    targeting purpose) (None: the policy asks for none); a policy that does not allow the
    action stops the job here."""
    d = decide(cfg, action, purpose or cfg.governance.purposes.serving, root=ws.root)
    purposes = d.consent_purposes()
    if not purposes:
        return None
    led = live_consent(cfg, ws.root).ledger()
    if hashed:
        from engine.pii import hmac_hex, load_key

        k = load_key(ws.root)
        led = ConsentLedger(
            led.events.assign(subject=[hmac_hex(k, s) for s in led.events["subject"]]),
            led.source,
            led.fingerprint,
        )
    return BatchConsent(
        led, tuple(purposes), key or "", pd.Timestamp.now(tz="UTC"), d.policy_version
    )


def check_snapshot(cfg: ProjectConfig, ws: Workspace) -> Decision:
    """The snapshot build's decision: allowed, and its column obligations met by the
    project as it is: a column the policy says to hash must be marked PII (hashed at read);
    a column it says to drop must feed no feature. Otherwise a :class:`PolicyError` naming
    the columns and the fix; nothing is read."""
    d = decide(cfg, "snapshot", cfg.governance.purposes.training, root=ws.root)
    pii = set(cfg.pii) | {p.split(".", 1)[-1] for p in cfg.pii}  # source.column, column
    unhashed = [c for c in d.columns("hash") if c not in pii]
    if unhashed:
        raise PolicyError(
            f"the governance policy (version {d.policy_version}) says to hash {unhashed}, "
            "which the project does not mark as PII. Fix: add them to pii: (as "
            "source.column) in insight.yaml."
        )
    used = {c: v.name for v in cfg.features.views for c in v.source_columns()}
    dropped = [
        f"{c} (view {used[c.split('.', 1)[-1]]})"
        for c in d.columns("drop")
        if c.split(".", 1)[-1] in used
    ]
    if dropped:
        raise PolicyError(
            f"the governance policy (version {d.policy_version}) says to drop {dropped}, "
            "which a feature view reads. Fix: remove those features, or change the policy."
        )
    return d
