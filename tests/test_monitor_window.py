"""The monitor's inputs: a window of the audit log read column-wise (rotation, time range,
layouts, what it cites), delayed labels (ingest checks, joins by request id and by entity
and time), and the statistics against independent references. Unit tier."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

from engine.audit import AuditWriter, audit_inputs, decision_record, verify
from engine.audit.window import read_window
from engine.config import ProjectConfig
from engine.errors import DataError
from engine.monitor import labels as lab
from engine.monitor import stats
from engine.monitor.profile import build_profile
from engine.workspace import Workspace
from tests.conftest import EXAMPLE


def _write(
    root: Path, n: int, t0: float, *, per_segment: int = 50, versions: tuple[str, ...] = ("1",)
) -> list[str]:
    rng = np.random.default_rng(0)
    w = AuditWriter(root, writer="t", max_records=per_segment, anchor_every=7)
    lid = w.register_layout(["a", "b"], ["c"], ["g"])
    rids = []
    for i in range(n):
        x = pd.DataFrame(
            {
                "a": [rng.normal()],
                "b": [None if i % 10 == 0 else float(i)],
                "c": [["x", "y"][i % 2]],
            }
        )
        rec = decision_record(
            route="predict",
            request_id=f"r{i}",
            model="m",
            versions=[versions[i % len(versions)]],
            generation=1,
            ids=[f"e{i % 7}"],
            layout=lid,
            inputs=audit_inputs(x, "values", ["a", "b"], ["c"]),
            input_policy="values",
            scores=[i / n],
            threshold=0.5,
            latency_ms=float(i % 13),
            groups={"g": ["F" if i % 3 else "M"]},
        )
        rec["time"] = t0 + i  # one request a second
        w.append([rec])
        rids.append(f"r{i}")
    w.close()
    return rids


def test_window_reads_rotated_segments_by_time_and_cites_what_it_read(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    t0 = time.time() + 5  # record times come after their segment opened, as live ones do
    _write(root, 230, t0, per_segment=50, versions=("1", "2"))
    assert len(list(root.glob("*.jsonl"))) >= 5, "segments rotate"
    assert verify(root).ok
    w = read_window(root, t0 + 100, t0 + 200)
    assert w.requests == w.rows == 100 and not w.problems
    assert set(w.version) == {"1", "2"}
    np.testing.assert_allclose(sorted(w.request_time), t0 + np.arange(100, 200))
    assert list(w.numeric) == ["a", "b"] and list(w.categorical) == ["c"]
    assert np.isnan(w.numeric["b"]).sum() == 10 and set(w.categorical["c"]) == {"x", "y"}
    assert set(w.groups["g"]) == {"F", "M"}
    assert sum(c.requests for c in w.covered) == 100
    for c in w.covered:
        assert c.first_seq <= c.last_seq and len(c.first_hash) == 64
    assert read_window(root, t0 + 5000, t0 + 6000).rows == 0


def test_a_broken_chain_is_reported_by_the_window(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    t0 = time.time() + 5
    _write(root, 40, t0, per_segment=1000)
    seg = next(root.glob("*.jsonl"))
    lines = seg.read_text().splitlines()
    lines[10] = lines[10].replace('"latency_ms":', '"latency_ms":9', 1)
    seg.write_text("\n".join(lines) + "\n")
    w = read_window(root, t0, t0 + 100)
    assert w.problems and "modified" in w.problems[0]


def test_labels_ingest_checks_everything_first_and_joins(tmp_path: Path) -> None:
    cfg = ProjectConfig.load(EXAMPLE)
    ws = Workspace(tmp_path / "ws").ensure()
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"customer_id": [1, 2, 3], "churned": [1, 0, 2]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="3 distinct values"):
        lab.ingest(cfg, ws, bad)
    pd.DataFrame({"customer_id": [1], "label_time": ["not a time"], "churned": [1]}).to_csv(
        bad, index=False
    )
    with pytest.raises(DataError, match="not times"):
        lab.ingest(cfg, ws, bad)
    pd.DataFrame({"who": [1], "churned": [1]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="lacks column"):
        lab.ingest(cfg, ws, bad)
    assert not list(lab.labels_dir(ws).glob("*")), "nothing partial written"
    # By request id, and by entity and time (the entity's latest decision before the label).
    by_req = tmp_path / "req.csv"
    pd.DataFrame({"request_id": ["r0", "r2"], "churned": [1, 0]}).to_csv(by_req, index=False)
    t0 = 1_700_000_000.0
    by_ent = tmp_path / "ent.csv"
    iso = lambda t: pd.Timestamp(t, unit="s", tz="UTC").isoformat()  # noqa: E731
    pd.DataFrame(
        {
            "customer_id": ["e1", "e1", "e9"],
            "label_time": [iso(t0 + 15), iso(t0 + 50_000_000), iso(t0)],
            "churned": [1, 0, 1],
        }
    ).to_csv(by_ent, index=False)
    assert lab.ingest(cfg, ws, by_req).rows == 2
    assert lab.ingest(cfg, ws, by_ent).rows == 3
    assert lab.ingest(cfg, ws, by_ent).duplicate, "the same file twice is stored once"
    labels = lab.load_labels(ws)
    request_id = np.array([f"r{i}" for i in range(5)], dtype=object)
    entity = np.array(["e0", "e1", "e2", "e1", "e3"], dtype=object)
    times = t0 + np.array([0, 1, 2, 10, 30], dtype=float)
    j = lab.join(labels, request_id, np.arange(5), entity, times, 60 * 86400)
    assert j["y"][0] == 1 and j["y"][2] == 0, "joined by request id"
    assert j["y"][3] == 1 and np.isnan(j["y"][1]), "the entity's latest decision before the label"
    assert np.isnan(j["y"][4])


def test_feature_statistics_match_references(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "x": rng.normal(size=3000),
            "c": rng.choice(["a", "b", "c"], 3000, p=[0.5, 0.3, 0.2]),
            "y": (rng.random(3000) < 0.3).astype(int),
            "g": rng.choice(["F", "M"], 3000),
        }
    )
    prof = build_profile(
        rows=ref,
        scores=rng.random(3000),
        label="y",
        features=["x", "c"],
        categorical=["c"],
        sensitive=["g"],
        threshold=0.5,
        psi_bins=10,
        test_labels=ref["y"].to_numpy(float),
        test_scores=rng.random(3000),
        uplift=None,
    )
    cur_x = rng.normal(0.2, 1.3, 2000)
    cur_c = rng.choice(["a", "b", "c", "zz"], 2000, p=[0.3, 0.3, 0.3, 0.1]).astype(object)
    s = stats.numeric_feature(cur_x, prof["features"]["x"], 0.05)
    d = st.ks_2samp(ref["x"], cur_x).statistic
    assert s["ks_low"] - 1e-12 <= d <= s["ks_low"] + s["ks_err"] + 1e-12
    assert s["variance_change"]["estimate"] == pytest.approx(
        cur_x.var(ddof=1) / ref["x"].var(ddof=1) - 1, rel=1e-9
    )
    out = ((cur_x < ref["x"].min()) | (cur_x > ref["x"].max())).mean()
    assert s["out_of_range_share"]["estimate"] == pytest.approx(out)
    c = stats.categorical_feature(cur_c, prof["features"]["c"], 0.05)
    table = np.vstack(
        [
            [np.sum(ref["c"] == k) for k in ["a", "b", "c", "zz"]],
            [np.sum(cur_c == k) for k in ["a", "b", "c", "zz"]],
        ]
    )
    assert c["p_value"] == pytest.approx(
        st.chi2_contingency(table, correction=False).pvalue, rel=1e-6, abs=1e-300
    )
    from scipy.spatial.distance import jensenshannon

    assert c["js"]["estimate"] == pytest.approx(jensenshannon(table[0], table[1], base=2), abs=1e-9)
    assert c["unseen_share"]["estimate"] == pytest.approx(np.mean(cur_c == "zz"))
    assert stats.bh([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.04, 0.04])
