"""Live lift of a served targeting policy: is the uplift the card promised still there?

``/decide`` holds out a random share of the customers the policy chose (engine's Serve
app, ``holdout``): among the chosen, contacted versus held out is a randomised comparison
on live traffic. Once outcomes arrive (``insight target outcomes FILE``: the customer key
and the outcome, as in the campaign table), ``live_lift`` joins them to the audited
decisions and measures, per effect segment and overall, the lift (contacted minus held
out) with its 95% interval (engine.kernels.lift: Newcombe for 0/1 outcomes, Welch for
amounts), and its change against what the model expected for the same customers (their
mean predicted uplift). The rule of the seeds, "a 5% decline in ATE", applies per
segment: it fires when the whole interval of the change lies below -5%.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.config.target import TargetProject
from engine.errors import DataError
from engine.workspace import Workspace

DECLINE = -0.05
HISTORY = "history-target"


def outcomes_dir(ws: Workspace, model: str) -> Path:
    return ws.labels / "target" / model


def _audited_key(proj: TargetProject, ws: Workspace, values: pd.Series) -> pd.Series:
    """Keys as the audit log holds them: keyed hashes when the key is PII."""
    t = proj.target
    if not t.key or f"{t.source}.{t.key}" not in proj.pii:
        return values.astype(str)
    from engine.pii import hmac_hex, load_key

    k = load_key(ws.root)
    return values.astype(str).map(lambda v: hmac_hex(k, v))


def ingest_outcomes(proj: TargetProject, ws: Workspace, path: Path) -> dict[str, Any]:
    """Check a file of outcomes (the customer key, the outcome) whole, then store it
    content-addressed (a re-ingest of the same file is a no-op); a problem writes nothing."""
    from engine.data.init import read_table, snake
    from engine.targeting.campaign import outcome_values
    from engine.workspace import atomic_write_bytes

    t = proj.target
    if not t.key:
        raise DataError(
            "outcomes are joined to decisions by the customer key, and target.key is not "
            "set. Fix: set target.key (the column naming a customer) and serve again."
        )
    if not path.is_file():
        raise DataError(f"outcomes file '{path}' does not exist. Fix: a CSV or Parquet path.")
    df, _, _ = read_table(path)
    rename = proj.sources[t.source].rename
    df = df.rename(columns={k: v for k, v in rename.items() if k in df.columns})
    df = df.rename(columns={c: snake(c) for c in df.columns if c not in (t.key, t.outcome)})
    missing = [c for c in (t.key, t.outcome) if c not in df.columns]
    if missing:
        raise DataError(
            f"outcomes file '{path.name}' lacks {missing} (columns: "
            f"{', '.join(map(str, df.columns[:20]))}). Fix: the customer key '{t.key}' and the "
            f"outcome '{t.outcome}', named as in the campaign table."
        )
    y, _ = outcome_values(df[t.outcome], t)
    out = pd.DataFrame({"key": _audited_key(proj, ws, df[t.key]), "y": y, "at": time.time()})
    out = out[np.isfinite(out["y"])]
    import io

    buf = io.BytesIO()
    out.to_parquet(buf, index=False)
    data = buf.getvalue()
    digest = hashlib.sha256(out[["key", "y"]].to_csv(index=False).encode()).hexdigest()[:16]
    dest = outcomes_dir(ws, proj.model_name) / f"outcomes-{digest}.parquet"
    if not dest.exists():
        atomic_write_bytes(dest, data)
    return {"rows": len(out), "dropped": len(df) - len(out), "path": str(dest)}


def _outcomes(ws: Workspace, model: str) -> pd.DataFrame:
    files = sorted(outcomes_dir(ws, model).glob("outcomes-*.parquet"))
    if not files:
        return pd.DataFrame({"key": [], "y": []})
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df.sort_values("at").drop_duplicates("key", keep="last")[["key", "y"]]


def decisions(ws: Workspace, model: str, t_from: float, t_to: float) -> pd.DataFrame:
    """One row per customer decided in [t_from, t_to): key, version, contact, held out,
    arm, segment, expected lift."""
    from engine.audit import read_records

    rows = []
    root = ws.audit / "decide"
    if not root.is_dir():
        return pd.DataFrame()
    for r in read_records(root, kind="decide"):
        if r.get("model") != model or not (t_from <= float(r["time"]) < t_to):
            continue
        keys = r.get("keys") or [None] * len(r["decisions"])
        inputs = r.get("inputs") or [{}] * len(r["decisions"])
        for k, d, x in zip(keys, r["decisions"], inputs, strict=True):
            rows.append(
                {
                    "key": k,
                    "version": str(d.get("version", r["versions"][0])),
                    "inputs": x,
                    "contact": bool(d["contact"]),
                    "held_out": bool(d["held_out"]),
                    "arm": d["best_arm"],
                    "segment": d["segment"],
                    "expected": float(d["expected_lift"]),
                }
            )
    return pd.DataFrame(rows)


def _triple(est: float, lo: float, hi: float) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in (est, lo, hi)]


def live_lift(
    proj: TargetProject,
    ws: Workspace,
    *,
    t_from: float | None = None,
    t_to: float | None = None,
    min_rows: int = 20,
    version: str | None = None,
    history: bool = True,
) -> dict[str, Any]:
    """Live lift per segment and overall, its change against the model's expectation, the
    rule's verdict; appended to the targeting monitor's history."""
    from engine.kernels.lift import cell_lift
    from engine.monitor.store import history_path

    t_to = time.time() if t_to is None else t_to
    t_from = 0.0 if t_from is None else t_from
    d = decisions(ws, proj.model_name, t_from, t_to)
    if d.empty:
        raise DataError(
            f"no /decide answers of {proj.model_name} in the window: nothing to measure. Fix: "
            "serve it (insight target serve) and let traffic come."
        )
    chosen = d[d["contact"] | d["held_out"]].merge(_outcomes(ws, proj.model_name), on="key")
    version = str(d["version"].iloc[-1]) if version is None else str(version)
    chosen = chosen[chosen["version"] == version]
    segs = sorted(chosen["segment"].unique().tolist())
    out: dict[str, Any] = {
        "model": proj.model_name,
        "version": version,
        "ran_at": pd.Timestamp.now("UTC").isoformat(timespec="seconds"),
        "from": t_from,
        "to": t_to,
        "from_iso": pd.Timestamp(t_from, unit="s", tz="UTC").isoformat(timespec="seconds"),
        "to_iso": pd.Timestamp(t_to, unit="s", tz="UTC").isoformat(timespec="seconds"),
        "decided": len(d),
        "with_outcome": len(chosen),
        "segments": {},
        "firing": [],
    }
    groups = {"all": np.zeros(len(chosen), dtype=np.int64)}
    if segs:
        groups["segment"] = chosen["segment"].map({s: i for i, s in enumerate(segs)}).to_numpy()
    for kind, codes in groups.items():
        names = ["all"] if kind == "all" else segs
        if not len(chosen):
            break
        r = cell_lift(
            chosen["y"].to_numpy(dtype=np.float64),
            chosen["contact"].to_numpy(dtype=np.int64),
            codes,
            n_segments=len(names),
            n_arms=2,
            n_boot=0,
            min_rows=min_rows,
        )
        for i, name in enumerate(names):
            on = codes == i
            exp = float(chosen.loc[on & chosen["contact"].to_numpy(), "expected"].mean())
            lift = _triple(r.lift[i, 0], r.low[i, 0], r.high[i, 0])
            change: list[float | None] = [None, None, None]
            if np.isfinite(exp) and exp != 0 and lift[0] is not None:
                change = [None if v is None else (v - exp) / abs(exp) for v in lift]
            enough = r.n_arm[i, 0] >= min_rows and r.n_control[i, 0] >= min_rows
            out["segments"][name] = {
                "contacted": int(r.n_arm[i, 0]),
                "held_out": int(r.n_control[i, 0]),
                "lift": lift,
                "expected": exp if np.isfinite(exp) else None,
                "change": change,
                "enough_rows": bool(enough),
            }
            if enough and change[2] is not None and change[2] < DECLINE:
                out["firing"].append(f"target|lift-decline|{name}|v{version}")
    mine = d[d["version"] == version]
    out["contact_rate"] = float(mine["contact"].mean()) if len(mine) else None
    out["_decided"] = mine  # for the roll-out's fairness guard; not written
    if history:
        import json

        p = history_path(ws, HISTORY)
        p.parent.mkdir(parents=True, exist_ok=True)
        line = {k: v for k, v in out.items() if not k.startswith("_")}
        with p.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")
    return out


APP = "decide"


def monitor_target(proj: TargetProject, ws: Workspace, t_from: float, t_to: float) -> Any:
    """The window's live lift of every version that decided in it, as the monitor's typed
    result (versions carry ``target``: effect segment -> lift), for the rules, alert states
    and sinks the churn and forecast monitors use (``target.lift``, ``target.lift_change``,
    scope segment)."""
    from engine.monitor.result import (
        AuditRead,
        Concept,
        MonitorResult,
        ScoreStats,
        Stat,
        TargetLift,
        TimeWindow,
        Traffic,
        VersionResult,
    )
    from engine.monitor.run import iso
    from engine.monitor.stats import latency

    t0 = time.perf_counter()
    d = decisions(ws, proj.model_name, t_from, t_to)
    result = MonitorResult(
        run_id=time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6],
        project=proj.name,
        model=proj.model_name,
        window=TimeWindow.model_validate(
            {"from": t_from, "to": t_to, "from_iso": iso(t_from), "to_iso": iso(t_to)}
        ),
        generated_at=iso(time.time()),
        audit=AuditRead(
            folder=str(ws.audit / APP),
            segments_read=0,
            problems=[],
            chain_ok=True,
            inputs_logged=True,
        ),
        traffic=Traffic(requests=len(d), rows=len(d)),
        no_traffic=d.empty,
    )
    if d.empty:
        result.seconds = {"total": time.perf_counter() - t0}
        return result
    for ver in sorted(d["version"].unique()):
        r = live_lift(proj, ws, t_from=t_from, t_to=t_to, version=str(ver), history=False)
        segs = {}
        for name, s in r["segments"].items():
            n = int(s["contacted"] + s["held_out"])
            segs[name] = TargetLift(
                contacted=int(s["contacted"]),
                held_out=int(s["held_out"]),
                lift=Stat.of(s["lift"][0], s["lift"][1], s["lift"][2], n),
                lift_change=Stat.of(s["change"][0], s["change"][1], s["change"][2], n),
            )
        mine = d[d["version"] == ver]
        result.models[str(ver)] = VersionResult(
            role="champion",
            rows=len(mine),
            requests=len(mine),
            profile=True,
            latency=latency(np.zeros(0), proj.monitor.latency_slo_p95_ms),
            concept=Concept(coverage=Stat(), labeled=int(r["with_outcome"])),
            score=ScoreStats(decision_rate=Stat.of(float(mine["contact"].mean()), n=len(mine))),
            target=segs,
        )
    result.seconds = {"total": time.perf_counter() - t0}
    return result
