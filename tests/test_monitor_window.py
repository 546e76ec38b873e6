"""The monitor's inputs: a window of the audit log read column-wise (rotation, time range,
layouts, what it cites), delayed labels (ingest checks, joins by request id and by entity
and time), and the statistics against independent references. Unit tier."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

from engine.audit import AuditWriter, audit_inputs, decision_record, verify
from engine.audit.window import read_window
from engine.config.project import ProjectConfig
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


def test_records_answered_before_their_segment_opened_are_in_the_window(
    tmp_path: Path,
) -> None:
    """A record is stamped when it is answered and written later; rotation can put it in a
    segment whose name (its open time) is after the record's time. Such a segment must
    still be read for a window ending before it opened (it was skipped by name once)."""
    root = tmp_path / "audit"
    t0 = time.time() - 3600  # an hour before any segment opens
    _write(root, 120, t0, per_segment=40)
    assert len(list(root.glob("*.jsonl"))) >= 3
    w = read_window(root, t0, t0 + 120)
    assert w.requests == 120 and not w.problems
    assert read_window(root, t0 + 200, t0 + 300).requests == 0
    assert read_window(root, t0 - 100, t0).requests == 0


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
    semi = tmp_path / "semi.csv"  # as a spreadsheet in Europe saves it: ';', Windows-1252
    pd.DataFrame({"request_id": ["r7", "r8"], "churned": ["1", "0"]}).to_csv(
        semi, sep=";", index=False, encoding="cp1252"
    )
    assert lab.ingest(cfg, ws, semi).rows == 2
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
    assert s.ks_low - 1e-12 <= d <= s.ks_low + s.ks_err + 1e-12
    assert s.variance_change.estimate == pytest.approx(
        cur_x.var(ddof=1) / ref["x"].var(ddof=1) - 1, rel=1e-9
    )
    # the range as the profile keeps it: 4 significant digits, rounded outward (so it holds
    # no row's exact value)
    lo, hi = ref["x"].min(), ref["x"].max()
    unit = lambda v: 10.0 ** (math.floor(math.log10(abs(v))) - 3)  # noqa: E731
    lo4 = float(f"{lo:.4g}")
    lo4 = lo4 - unit(lo) if lo4 > lo else lo4
    hi4 = float(f"{hi:.4g}")
    hi4 = hi4 + unit(hi) if hi4 < hi else hi4
    assert lo4 <= lo and hi4 >= hi and hi4 - hi <= unit(hi) * 1.0001
    out = ((cur_x < lo4) | (cur_x > hi4)).mean()
    assert s.out_of_range_share.estimate == pytest.approx(out)
    c = stats.categorical_feature(cur_c, prof["features"]["c"], 0.05)
    table = np.vstack(
        [
            [np.sum(ref["c"] == k) for k in ["a", "b", "c", "zz"]],
            [np.sum(cur_c == k) for k in ["a", "b", "c", "zz"]],
        ]
    )
    assert c.p_value == pytest.approx(
        st.chi2_contingency(table, correction=False).pvalue, rel=1e-6, abs=1e-300
    )
    from scipy.spatial.distance import jensenshannon

    assert c.js.estimate == pytest.approx(jensenshannon(table[0], table[1], base=2), abs=1e-9)
    assert c.unseen_share.estimate == pytest.approx(np.mean(cur_c == "zz"))
    from engine.kernels.report import benjamini_hochberg

    assert benjamini_hochberg([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.04, 0.04])


@pytest.mark.parametrize("seed", range(40))
def test_the_fast_check_and_the_line_by_line_check_agree(tmp_path: Path, seed: int) -> None:
    """verify's compiled fast path says "clean" exactly when the line-by-line check finds
    no problem, on segments damaged at random (a byte changed, a line removed, two lines
    swapped, a line duplicated, a tail cut), and on undamaged ones."""
    from engine.audit.fastcheck import check_clean
    from engine.audit.verify import _check_lines, _read_head

    root = tmp_path / "audit"
    _write(root, 60, time.time(), per_segment=1000)
    seg = next(root.glob("*.jsonl"))
    head, _ = _read_head(seg.with_suffix(".head"))
    data = seg.read_bytes()
    rng = np.random.default_rng(seed)
    lines = data.split(b"\n")[:-1]
    how = seed % 6
    if how == 1:
        i = int(rng.integers(len(data) - 1))
        b = bytearray(data)
        b[i] = int(rng.choice([c for c in b"0123456789abcdef,:{}x" if c != b[i]]))
        data = bytes(b)
    elif how == 2:
        del lines[int(rng.integers(len(lines)))]
    elif how == 3:
        i = int(rng.integers(len(lines) - 1))
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif how == 4:
        i = int(rng.integers(len(lines)))
        lines.insert(i, lines[i])
    elif how == 5:
        lines = lines[: int(rng.integers(1, len(lines)))]
    if how != 1:
        data = b"\n".join(lines) + b"\n"
    chk = type("C", (), {"problems": [], "in_progress": False, "records": 0})()
    _check_lines(chk, seg, data.split(b"\n")[:-1], False, head)
    clean, n = check_clean(seg.name.removesuffix(".jsonl"), data, head)
    assert clean == (not chk.problems), chk.problems
    assert (how == 0) == clean
    if clean:
        assert n == chk.records


def test_the_columnar_window_equals_reading_record_by_record(tmp_path: Path) -> None:
    """read_window against an independent reader (json per line, verify.read_records) on
    mixed traffic: two layouts (a new version's features), requests without inputs or
    ids, multi-row requests, shadow scores, a malformed input list, rotation mid-way."""
    from engine.audit import read_records

    root = tmp_path / "audit"
    rng = np.random.default_rng(5)
    w = AuditWriter(root, writer="t", max_records=40, anchor_every=5)
    l1 = w.register_layout(["a", "b"], ["c"], ["g"])
    l2 = w.register_layout(["a", "d"], [], [])
    t0 = time.time()
    for i in range(150):
        k = 1 if i % 9 else 3  # multi-row requests now and then
        two = i % 4 == 3
        names = ["a", "d"] if two else ["a", "b"]
        x = pd.DataFrame({n: rng.normal(size=k) for n in names})
        if not two:
            x["c"] = rng.choice(["p", "q", None], size=k)
        inputs = audit_inputs(x, "values", names, [] if two else ["c"])
        if i % 11 == 5:
            inputs = {}  # inputs not logged for this request
        if i % 23 == 7:
            inputs = {"x": [[1.0]] * k}  # malformed: too few values for the layout
        rec = decision_record(
            route="predict",
            request_id=f"r{i}",
            model="m",
            versions=["2" if two else "1"] * k,
            generation=1,
            ids=None if i % 5 == 0 else [f"e{i}-{j}" for j in range(k)],
            layout=l2 if two else l1,
            inputs=inputs,
            input_policy="values",
            scores=rng.random(k).tolist(),
            threshold=0.5,
            latency_ms=float(i),
            groups=None if two else {"g": rng.choice(["F", "M"], size=k).tolist()},
            shadow={"version": "9", "scores": rng.random(k).tolist()} if i % 6 == 0 else None,
        )
        rec["time"] = t0 + i
        w.append([rec])
    w.close()
    win = read_window(root, t0 + 10, t0 + 140)
    recs = [r for r in read_records(root) if t0 + 10 <= r["time"] < t0 + 140]
    assert not win.problems and win.requests == len(recs)
    rows = [(r, j) for r in recs for j in range(len(r["scores"]))]
    assert win.rows == len(rows)
    np.testing.assert_allclose(win.score, [r["scores"][j] for r, j in rows])
    assert list(win.version) == [r["versions"][j] for r, j in rows]
    assert list(win.entity) == [r["ids"][j] if r["ids"] else None for r, j in rows]
    assert list(win.request_id) == [r["request_id"] for r in recs]
    for r, j in rows:  # shadow scores where logged
        i = rows.index((r, j))
        if r.get("shadow"):
            assert win.shadow_version[i] == "9"
            assert win.shadow_score[i] == pytest.approx(r["shadow"]["scores"][j])
        else:
            assert win.shadow_version[i] is None and np.isnan(win.shadow_score[i])
    for i, (r, j) in enumerate(rows):
        feats, given = r.get("input_features") or [], r.get("inputs") or []
        fits = len(given) == len(r["scores"]) and len(given[j]) == len(feats)
        vals = dict(zip(feats, given[j], strict=True)) if fits else {}
        for name in ("a", "b", "d"):
            got = win.numeric[name][i]
            want = vals.get(name)
            assert (np.isnan(got) and want is None) or got == pytest.approx(want), (i, name)
        assert win.categorical["c"][i] == vals.get("c")
        if r.get("groups"):
            assert win.groups["g"][i] == r["groups"]["g"][j]
        else:
            assert win.groups["g"][i] is None
