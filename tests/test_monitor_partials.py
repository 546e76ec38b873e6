"""The monitor from per-segment partial aggregates (engine.monitor.partials) equals the
monitor over the whole window at once, on random logs of both audit formats: mixed
versions within a request, missing inputs, sensitive groups, labels by request and by
entity (with times), treatments, a window that cuts segments; and a second run served
from the cache of closed segments gives the same result."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.config.project import DEFAULT_PROJECT, ProjectConfig
from engine.workspace import Workspace

NUM = ["x0", "x1", "x2"]
CAT = ["c0", "c1"]
T0 = 1_800_000_000.0


def _cfg() -> ProjectConfig:
    cfg = ProjectConfig.load(DEFAULT_PROJECT)
    return cfg.model_copy(
        update={
            "sensitive": ["grp"],
            "monitor": cfg.monitor.model_copy(update={"rules": [], "min_rows": 5}),
        }
    )


def _profile(rng: np.random.Generator) -> dict[str, Any]:
    from engine.monitor.profile import build_profile

    n = 3000
    rows = pd.DataFrame(rng.normal(0, 1, (n, 3)), columns=NUM)
    rows["c0"] = rng.choice(["a", "b", "c"], n)
    rows["c1"] = rng.choice(["u", "v"], n)
    rows["grp"] = rng.choice(["F", "M"], n)
    rows["y"] = (rng.random(n) < 0.3).astype(float)
    return build_profile(
        rows=rows,
        scores=rng.random(n),
        label="y",
        features=NUM + CAT,
        categorical=CAT,
        sensitive=["grp"],
        threshold=0.5,
        psi_bins=10,
        test_labels=rows["y"].to_numpy()[:500],
        test_scores=rng.random(500),
        uplift={"ate": {"estimate": 0.05, "low": 0.01, "high": 0.09}, "rows": 3000},
    )


def _workspace(tmp: Path, seed: int, columnar: bool) -> tuple[ProjectConfig, Workspace, float]:
    from engine.audit import AuditWriter, decision_record

    rng = np.random.default_rng(seed)
    cfg = _cfg()
    ws = Workspace(tmp / ".insight").ensure()
    prof_dir = ws.root / "monitor" / "profiles"
    prof_dir.mkdir(parents=True)
    for v in ("1", "2"):
        (prof_dir / f"{cfg.train.model_name}-v{v}.json").write_text(json.dumps(_profile(rng)))
    (ws.root / "serve").mkdir(exist_ok=True)
    (ws.root / "serve" / "rollout-insight.json").write_text(
        json.dumps({"champion": "1", "challenger": "2"})
    )
    n_req = int(rng.integers(400, 800))
    entities = [f"e{i}" for i in range(150)]
    t = T0
    req_ids: list[str] = []
    req_ent: list[tuple[str, float]] = []
    for w_i in range(2):  # two replicas, each rotating segments
        w = AuditWriter(
            ws.audit / "insight",
            writer=f"r{w_i}",
            max_records=int(rng.integers(90, 250)),
            columnar=columnar,
        )
        lid = w.register_layout(NUM, CAT, ["grp"])
        for i in range(n_req // 2):
            k = int(rng.integers(1, 4))
            x = rng.normal(0.1, 1.1, (k, 3)).round(4)
            x[rng.random((k, 3)) < 0.05] = np.nan
            xs = [[None if math.isnan(v) else float(v) for v in row] for row in x]
            cs = [
                [
                    None if rng.random() < 0.05 else str(rng.choice(["a", "b", "c", "d"])),
                    str(rng.choice(["u", "v"])),
                ]
                for _ in range(k)
            ]
            ids = [str(rng.choice(entities)) for _ in range(k)]
            rid = f"{seed}-{w_i}-{i}"
            rec = decision_record(
                route="predict",
                request_id=rid,
                model=cfg.train.model_name,
                versions=[str(rng.choice(["1", "2"], p=[0.7, 0.3])) for _ in range(k)],
                generation=1,
                ids=ids,
                layout=lid,
                inputs={"x": xs, "xc": cs},
                input_policy="values",
                scores=[float(s) for s in rng.random(k).round(5)],
                threshold=0.5,
                latency_ms=float(rng.choice([1.0, 2.5, 3.25, 7.125, 40.0])) + i % 3,
                groups={
                    "grp": [
                        None if rng.random() < 0.1 else str(rng.choice(["F", "M"]))
                        for _ in range(k)
                    ]
                },
            )
            t += float(rng.exponential(1.0))
            rec["time"] = t
            w.append([rec])
            req_ids.append(rid)
            req_ent += [(e, t) for e in ids]
        w.close()
    # Labels: some by request id, some by entity with a time after the decision, some
    # by entity without a time; treatments for the live ATE.
    lab_req = rng.choice(req_ids, size=len(req_ids) // 4, replace=False)
    by_req = pd.DataFrame({"by": "request", "id": lab_req, "y": rng.integers(0, 2, lab_req.size)})
    pick = rng.choice(len(req_ent), size=len(req_ent) // 6, replace=False)
    by_ent = pd.DataFrame(
        {
            "by": "entity",
            "id": [req_ent[i][0] for i in pick],
            "y": rng.integers(0, 2, pick.size),
            "time": [req_ent[i][1] + float(rng.uniform(0, 50)) for i in pick],
        }
    )
    untimed = pd.DataFrame({"by": "entity", "id": entities[:5], "y": [1, 0, 1, 0, 1]})
    labels = pd.concat([by_req, by_ent, untimed], ignore_index=True)
    labels["y"] = labels["y"].astype(np.int8)
    labels["t"] = rng.integers(0, 2, len(labels)).astype(float)
    labels["o"] = rng.integers(0, 2, len(labels)).astype(float)
    ws.labels.mkdir(parents=True, exist_ok=True)
    labels.to_parquet(ws.labels / "labels-test.parquet", index=False)
    return cfg, ws, t


def _plain(res: Any) -> dict[str, Any]:
    d = res.model_dump(mode="json")
    for k in ("run_id", "generated_at", "seconds"):
        d.pop(k, None)
    d["audit"].pop("read_by", None)
    d["audit"].pop("segments_cached", None)
    return d


def _close(a: Any, b: Any, path: str = "") -> list[str]:
    """Differences between two dumps: floats to 1e-9 relative (moments merge in another
    order), everything else exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}: keys {sorted(set(a) ^ set(b))}"] if set(a) != set(b) else []
        for k in set(a) & set(b):
            out += _close(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _close(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else [f"{path}: {a} vs {b}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


@pytest.mark.parametrize("columnar", [True, False], ids=["format3", "format2"])
@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed-{s}")
def test_partials_equal_the_whole_window(tmp_path: Path, seed: int, columnar: bool) -> None:
    from engine.monitor.run import monitor_window

    cfg, ws, t_end = _workspace(tmp_path, seed, columnar)
    rng = np.random.default_rng(1000 + seed)
    lo = T0 + float(rng.uniform(0, 0.2)) * (t_end - T0)  # cuts a segment in two
    hi = t_end + 1
    single = monitor_window(cfg, ws, lo, hi, mode="single")
    assert single.traffic.requests > 100 and single.labels is not None
    assert single.audit.segments_read >= 4  # rotated: the window spans several segments
    assert single.labels.joined_rows > 0 and len(single.models) == 2
    assert any(m.fairness for m in single.models.values())
    parts = monitor_window(cfg, ws, lo, hi, threads=2, executor="threads")
    diff = _close(_plain(single), _plain(parts))
    assert not diff, diff[:10]
    assert parts.audit.segments_cached == 0 and parts.audit.read_by == "threads: 2"
    again = monitor_window(cfg, ws, lo, hi, threads=1, executor="threads")  # cached parts
    assert again.audit.segments_cached >= 1
    diff = _close(_plain(single), _plain(again))
    assert not diff, diff[:10]


def test_a_cached_part_not_signed_by_the_workspace_is_not_loaded(tmp_path: Path) -> None:
    from engine.monitor.run import monitor_window

    cfg, ws, t_end = _workspace(tmp_path, 0, True)
    first = monitor_window(cfg, ws, T0 - 1, t_end + 1, executor="threads")
    parts = sorted((ws.root / "monitor" / "partials" / "insight").glob("*.part"))
    assert parts and first.audit.segments_cached == 0
    blob = bytearray(parts[0].read_bytes())
    blob[40] ^= 0xFF  # a flipped byte in the pickled body: the signature fails
    parts[0].write_bytes(bytes(blob))
    second = monitor_window(cfg, ws, T0 - 1, t_end + 1, executor="threads")
    assert second.audit.segments_cached == len(parts) - 1
    assert not _close(_plain(first), _plain(second))


def test_new_labels_are_joined_even_where_parts_are_cached(tmp_path: Path) -> None:
    from engine.monitor.run import monitor_window

    cfg, ws, t_end = _workspace(tmp_path, 3, True)
    monitor_window(cfg, ws, T0 - 1, t_end + 1, executor="threads")
    (ws.labels / "labels-test.parquet").unlink()
    none = monitor_window(cfg, ws, T0 - 1, t_end + 1, executor="threads")
    assert none.labels is not None and none.labels.joined_rows == 0
    assert none.audit.segments_cached == 0  # the labels changed: parts recomputed
    single = monitor_window(cfg, ws, T0 - 1, t_end + 1, mode="single")
    assert not _close(_plain(single), _plain(none))


def test_a_new_version_keeps_the_parts_without_its_traffic(tmp_path: Path) -> None:
    """A part depends on the reference profile of the versions it holds, not on every
    registered one: a v3 registered (and rolled out as challenger) after the segments were
    written leaves every cached part valid; a changed v2 reference recomputes those that
    hold v2's traffic. Both results equal the whole window computed at once."""
    from engine.monitor.run import monitor_window

    cfg, ws, t_end = _workspace(tmp_path, 4, True)
    first = monitor_window(cfg, ws, T0 - 1, t_end + 1, executor="threads")
    n_parts = len(list((ws.root / "monitor" / "partials" / "insight").glob("*.part")))
    assert n_parts >= 2 and first.audit.segments_cached == 0
    prof_dir = ws.root / "monitor" / "profiles"
    rng = np.random.default_rng(99)
    (prof_dir / f"{cfg.train.model_name}-v3.json").write_text(json.dumps(_profile(rng)))
    (ws.root / "serve" / "rollout-insight.json").write_text(
        json.dumps({"champion": "1", "challenger": "3"})
    )
    v3 = monitor_window(cfg, ws, T0 - 1, t_end + 1, executor="threads")
    assert v3.audit.segments_cached == n_parts
    assert not _close(_plain(v3), _plain(monitor_window(cfg, ws, T0 - 1, t_end + 1, mode="single")))
    (prof_dir / f"{cfg.train.model_name}-v2.json").write_text(json.dumps(_profile(rng)))
    v2 = monitor_window(cfg, ws, T0 - 1, t_end + 1, executor="threads")
    assert v2.audit.segments_cached == 0  # every segment holds some of v2's traffic
    single = monitor_window(cfg, ws, T0 - 1, t_end + 1, mode="single")
    assert not _close(_plain(v2), _plain(single))
    assert _close(_plain(v3), _plain(v2)), "v2's new reference changed its statistics"


@pytest.mark.ray
def test_ray_tasks_give_the_same_parts(tmp_path: Path, ray_local: Workspace) -> None:
    """On a cluster the segments are read by Ray tasks (one per group of segments): the
    result equals the threads' and the whole window's."""
    from engine.monitor.run import monitor_window

    cfg, ws, t_end = _workspace(tmp_path, 5, True)
    single = monitor_window(cfg, ws, T0 - 1, t_end + 1, mode="single")
    by_ray = monitor_window(cfg, ws, T0 - 1, t_end + 1, executor="ray", cache=False)
    assert by_ray.audit.read_by is not None and by_ray.audit.read_by.startswith("ray: ")
    diff = _close(_plain(single), _plain(by_ray))
    assert not diff, diff[:10]


@pytest.mark.parametrize("seed", range(30), ids=lambda s: f"seed-{s}")
def test_percentiles_from_counts_are_numpys_bit_for_bit(seed: int) -> None:
    from engine.monitor.stats import percentiles_from_counts

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    x = np.round(rng.lognormal(1, 1, n), int(rng.integers(0, 4)))  # many ties
    u, c = np.unique(x, return_counts=True)
    q = [50, 95, 99, float(rng.uniform(0, 100)), 0, 100]
    assert percentiles_from_counts(u, c, q) == [float(v) for v in np.percentile(x, q)]
