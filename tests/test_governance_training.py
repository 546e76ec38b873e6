"""Training uses only the rows whose subject consented to the training purpose as of the
label time: the rows kept and the manifest's counts against DuckDB's ASOF JOIN, on a real
Parquet snapshot and a real CSV consent source, keys plain and PII-hashed; a policy that
denies training stops it before anything is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from engine.config.governance import ConsentConfig, GovernanceConfig
from engine.config.project import ProjectConfig
from engine.config.source import SourceConfig
from engine.errors import PolicyError
from engine.features.snapshot import Snapshot
from engine.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "retail" / "insight.yaml"
T0 = pd.Timestamp("2025-03-01")


def _setup(tmp: Path, seed: int, *, hashed: bool, policy: Path | None = None) -> Any:
    rng = np.random.default_rng(seed)
    ws = Workspace(tmp / ".insight").ensure()
    n, ids = 400, np.arange(1, 81)
    key = rng.choice(ids, n)
    lt = T0 + pd.to_timedelta(rng.integers(0, 90, n), unit="D")
    stored_key = key.astype(str)
    cfg = ProjectConfig.load(EXAMPLE)
    if hashed:
        from engine.pii import hmac_hex, load_key

        k = load_key(ws.root)
        stored_key = np.array([hmac_hex(k, s) for s in stored_key])
    snap_dir = tmp / "snap"
    snap_dir.mkdir()
    df = pd.DataFrame(
        {"customer_id": stored_key, "label_time": lt, "churned": rng.integers(0, 2, n)}
    )
    df.to_parquet(snap_dir / "part-0.parquet", index=False)
    snap = Snapshot(
        snap_dir, {"snapshot_id": "s1", "entity": "customer_id", "label_time": "label_time"}
    )
    m = 300
    events = pd.DataFrame(
        {
            "cust": rng.choice(np.arange(1, 90), m),  # some subjects never recorded
            "why": rng.choice(["model_training", "marketing"], m),
            "state": rng.choice(["granted", "withdrawn"], m, p=[0.7, 0.3]),
            "when": T0 + pd.to_timedelta(rng.integers(-30, 90, m), unit="D"),
        }
    )
    events.to_csv(ws.data / "consents.csv", index=False)
    src = SourceConfig(
        path=str(ws.data / "consents.csv"),
        format="csv",
        columns={"cust": "string", "why": "string", "state": "string", "when": "timestamp"},
    )
    gov = GovernanceConfig(
        consent=ConsentConfig(
            source="consents", subject="cust", purpose="why", status="state", time="when"
        ),
        policy=str(policy) if policy else None,
    )
    cfg = cfg.model_copy(
        update={
            "workspace": str(ws.root),
            "sources": {**cfg.sources, "consents": src},
            "governance": gov,
            "pii": [*cfg.pii, "customers.customer_id"] if hashed else cfg.pii,
        }
    )
    return cfg, ws, snap, df, events, key


def _oracle(df: pd.DataFrame, events: pd.DataFrame, key: np.ndarray) -> np.ndarray:
    con = duckdb.connect()
    ev = events[events["why"] == "model_training"].assign(
        s=events["cust"].astype(str), g=events["state"] == "granted", ts=events["when"]
    )
    con.register("ev_raw", ev[["s", "g", "ts"]])
    q = pd.DataFrame({"i": np.arange(len(df)), "s": key.astype(str), "t": df["label_time"]})
    con.register("q", q)
    rows = con.execute(
        """WITH ev AS (SELECT s, ts, bool_and(g) AS g FROM ev_raw GROUP BY s, ts)
        SELECT q.i, coalesce(ev.g, false) FROM q ASOF LEFT JOIN ev ON q.s = ev.s AND q.t >= ev.ts
        ORDER BY q.i"""
    ).fetchall()
    return np.array([bool(g) for _, g in rows])


@pytest.mark.parametrize("hashed", [False, True], ids=["plain-key", "pii-hashed-key"])
@pytest.mark.parametrize("seed", range(4))
def test_training_rows_are_those_with_consent_at_their_label_time(
    tmp_path: Path, seed: int, hashed: bool
) -> None:
    from engine.governance.enforce import consented_training_rows

    cfg, ws, snap, df, events, key = _setup(tmp_path, seed, hashed=hashed)
    kept, manifest = consented_training_rows(cfg, ws, snap, snap.read_pandas())
    want = _oracle(df, events, key)
    assert kept.index.tolist() == np.flatnonzero(want).tolist()
    assert manifest is not None
    assert manifest["rows"] == len(df) and manifest["rows_kept"] == int(want.sum())
    assert manifest["subjects_excluded"] == len(set(key[~want]))
    c = manifest["by_purpose"]["model_training"]
    assert c["allowed"] == int(want.sum())
    assert c["no consent on record"] + c["consent withdrawn"] == int((~want).sum())
    assert manifest["checked_as_of"] == "label time"
    blob = str(manifest)
    assert not any(f"'{k}'" in blob for k in df["customer_id"]), "no subject key in it"


def test_a_policy_that_denies_training_stops_it(tmp_path: Path) -> None:
    from engine.governance.enforce import consented_training_rows

    pol = tmp_path / "ours.rego"
    pol.write_text(
        "package insight.governance\n\nimport rego.v1\n\n"
        'deny contains "training is paused by the DPO" if input.action == "train"\n'
    )
    cfg, ws, snap, *_ = _setup(tmp_path, 0, hashed=False, policy=pol)
    with pytest.raises(PolicyError, match="training is paused by the DPO"):
        consented_training_rows(cfg, ws, snap, snap.read_pandas())
