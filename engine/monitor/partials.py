"""The monitor's statistics from mergeable partial aggregates, one per audit segment.

A window's statistics are computed per segment, in parallel (threads, or Ray tasks on a
cluster), as partial aggregates that merge exactly:

- per model version: rows, requests, decisions, the latencies of its requests as distinct
  values with counts (percentiles of the merged counts are the window's percentiles);
- per feature: counts on the reference sketch's fine bins (KS bracket, PSI), NaN and
  out-of-range counts, central moments (merged by Pebay's formulas: equal to one pass
  over the window up to float rounding); per categorical feature: value counts;
- the score: the same as a numeric feature, plus the decisions;
- per sensitive attribute: rows and decisions per group;
- label joins: the rows a label can reach (their request id or entity is in the labels),
  with what the concept, fairness and uplift statistics read of them, in window order.

``finish`` turns the merged parts into the same :class:`VersionResult` as computing over
the whole window at once (tests/test_monitor_partials.py compares them on random logs, for
many seeds). A closed segment that lies wholly inside the window has its part cached under
the monitor's folder (keyed by the segment's last digest, the reference profiles and the
labels), so a monitor run every few minutes over a day-long window reads only what is new.
The cache is pickled and signed with the workspace's key (HMAC-SHA256): a file that was
not written by this workspace is not loaded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from engine.audit.verify import _read_head
from engine.audit.window import Covered, Window, _assemble, read_segment_table
from engine.kernels._objects import value_counts
from engine.monitor import stats

VERSION = 2  # of the partial's layout: a change invalidates every cached part
ProfileOf = Callable[[str], dict[str, Any] | None]


@dataclass
class LabelKeys:
    """The ids labels can join on: a row outside them never gets a label."""

    requests: pa.Array
    entities: pa.Array
    fingerprint: str

    @classmethod
    def of(cls, labels: pd.DataFrame | None) -> LabelKeys | None:
        if labels is None or labels.empty:
            return None
        by = labels["by"].astype(str)
        req = labels.loc[by == "request", "id"].astype(str).unique()
        ent = labels.loc[by == "entity", "id"].astype(str).unique()
        fp = hashlib.sha256(
            pd.util.hash_pandas_object(labels.astype(str), index=False).to_numpy().tobytes()
        ).hexdigest()[:16]
        return cls(pa.array(req, pa.string()), pa.array(ent, pa.string()), fp)


@dataclass
class LabelRows:
    """Rows a label may join, in window order, with what the statistics read of them."""

    request_id: np.ndarray
    entity: np.ndarray
    time: np.ndarray
    version: np.ndarray
    score: np.ndarray
    decision: np.ndarray
    groups: dict[str, np.ndarray]

    @classmethod
    def concat(cls, parts: list[LabelRows], attrs: Iterable[str]) -> LabelRows:
        def cat(xs: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(xs) if xs else np.empty(0, dtype=dtype)

        return cls(
            cat([p.request_id for p in parts], object),
            cat([p.entity for p in parts], object),
            cat([p.time for p in parts], float),
            cat([p.version for p in parts], object),
            cat([p.score for p in parts], float),
            cat([p.decision for p in parts], bool),
            {
                a: cat(
                    [p.groups.get(a, np.full(p.time.size, None, dtype=object)) for p in parts],
                    object,
                )
                for a in attrs
            },
        )


@dataclass
class VersionPart:
    rows: int
    requests: int
    decisions: int
    latency: tuple[np.ndarray, np.ndarray]  # distinct latencies and their counts
    profile: bool
    score: stats.ScorePart | None = None
    features: dict[str, stats.NumericPart | stats.CategoricalPart] = field(default_factory=dict)
    groups: dict[str, dict[tuple[str | None, bool], int]] = field(default_factory=dict)

    def merge(self, o: VersionPart) -> VersionPart:
        feats = dict(self.features)
        for f, p in o.features.items():
            q = feats.get(f)
            feats[f] = p if q is None else q.merge(p)  # type: ignore[arg-type]
        groups = {a: dict(c) for a, c in self.groups.items()}
        for a, c in o.groups.items():
            g = groups.setdefault(a, {})
            for k, v in c.items():
                g[k] = g.get(k, 0) + v
        vals = np.concatenate([self.latency[0], o.latency[0]])
        cnts = np.concatenate([self.latency[1], o.latency[1]])
        u, inv = np.unique(vals, return_inverse=True)
        return VersionPart(
            self.rows + o.rows,
            self.requests + o.requests,
            self.decisions + o.decisions,
            (u, np.bincount(inv, weights=cnts, minlength=u.size).astype(np.int64)),
            self.profile or o.profile,
            o.score
            if self.score is None
            else self.score
            if o.score is None
            else self.score.merge(o.score),
            feats,
            groups,
        )


@dataclass
class SegmentPart:
    segment: str
    covered: Covered | None = None
    problems: list[str] = field(default_factory=list)
    requests: int = 0
    rows: int = 0
    inputs_logged: bool | None = None  # None: no decision in the window
    unseen: dict[str, int] = field(default_factory=dict)
    versions: dict[str, VersionPart] = field(default_factory=dict)
    labels: LabelRows | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    # the reference profile each version's part was computed against (its fingerprint, or
    # None without one): a cached part is used only while these still hold, so a new model
    # version recomputes only the segments that hold its traffic
    profiles: dict[str, str | None] = field(default_factory=dict)


def _latency(ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, c = np.unique(np.asarray(ms, dtype=np.float64), return_counts=True)
    return u, c.astype(np.int64)


def segment_part(
    path: Path,
    t_from: float,
    t_to: float,
    profile_of: ProfileOf,
    attrs: list[str],
    keys: LabelKeys | None,
) -> SegmentPart:
    """Verify, decode and aggregate one segment's decisions in ``[t_from, t_to)``."""
    t0 = time.perf_counter()
    r = read_segment_table(path, t_from, t_to)
    out = SegmentPart(path.name, problems=[f"{path.name}: {p}" for p in r.problems])
    out.unseen = r.unseen
    w = Window(t_from, t_to)
    a = time.perf_counter()
    _assemble(w, [(path, r.table)] if r.table is not None else [])
    b = time.perf_counter()
    out.seconds = {"verify": r.verify_s, "parse": r.parse_s, "assemble": b - a}
    out.covered = w.covered[0] if w.covered else None
    out.requests, out.rows = w.requests, w.rows
    if w.rows == 0:
        out.seconds["statistics"] = time.perf_counter() - b
        return out
    out.inputs_logged = w.inputs_logged
    for v in sorted(str(x) for x in pd.unique(w.version)):
        m = w.version == v
        prof = profile_of(v)
        out.versions[v] = _version_part(w, m, prof, attrs)
        out.profiles[v] = profile_fingerprint(prof)
    if keys is not None:
        out.labels = _label_rows(w, keys, attrs)
    out.seconds["statistics"] = time.perf_counter() - b
    out.seconds["total"] = time.perf_counter() - t0
    return out


def _version_part(
    w: Window, m: np.ndarray, prof: dict[str, Any] | None, attrs: list[str]
) -> VersionPart:
    every = bool(m.all())
    sel: np.ndarray | slice = slice(None) if every else m
    reqs = (
        np.arange(w.requests)
        if every and w.rows == w.requests
        else np.unique(w.request_of_row[sel])
    )
    dec = w.decision[sel]
    vp = VersionPart(
        rows=int(w.rows if every else m.sum()),
        requests=int(reqs.size),
        decisions=int(dec.sum()),
        latency=_latency(w.latency_ms[reqs]),
        profile=prof is not None,
    )
    if prof is None:
        return vp
    vp.score = stats.score_part(w.score[sel], dec, prof["score"])
    for f, ref in prof["features"].items():
        if ref["kind"] == "numeric" and f in w.numeric:
            vp.features[f] = stats.numeric_part(w.numeric[f][sel], ref)
        elif ref["kind"] == "categorical" and f in w.categorical:
            vp.features[f] = stats.categorical_part(w.categorical[f][sel])
    for attr in attrs:
        if attr in w.groups:
            g = np.asarray(w.groups[attr][sel], dtype=object)
            cells: dict[tuple[str | None, bool], int] = {}
            for d in (True, False):
                vals, cnt, nulls = value_counts(g[dec == d])
                for x, c in zip(vals, cnt.tolist(), strict=True):
                    cells[(str(x), d)] = cells.get((str(x), d), 0) + int(c)
                if nulls:
                    cells[(None, d)] = int(nulls)
            vp.groups[attr] = cells
    return vp


def _label_rows(w: Window, keys: LabelKeys, attrs: list[str]) -> LabelRows:
    hit = np.zeros(w.rows, dtype=bool)
    rid = w._ids[0] if w._ids is not None else None
    if len(keys.requests) and rid is not None:
        per_req = pc.is_in(rid, value_set=keys.requests).to_numpy(zero_copy_only=False)
        hit |= np.asarray(per_req, dtype=bool)[w.request_of_row]
    if len(keys.entities):
        ent = w.entity
        known = pd.Series(ent, dtype=object)
        hit |= (
            known.notna().to_numpy() & known.astype(str).isin(keys.entities.to_pylist()).to_numpy()
        )
    idx = np.flatnonzero(hit)
    req_ids = (
        np.asarray(
            rid.take(pa.array(w.request_of_row[idx])).to_numpy(zero_copy_only=False), dtype=object
        )
        if rid is not None
        else np.full(idx.size, None, dtype=object)
    )
    return LabelRows(
        request_id=req_ids,
        entity=np.asarray(w.entity[idx], dtype=object) if idx.size else np.empty(0, dtype=object),
        time=w.row_time[idx],
        version=np.asarray(w.version[idx], dtype=object),
        score=w.score[idx],
        decision=w.decision[idx],
        groups={a: np.asarray(w.groups[a][idx], dtype=object) for a in attrs if a in w.groups},
    )


# ---- merging ---------------------------------------------------------------------------


@dataclass
class Merged:
    parts: list[SegmentPart]
    requests: int
    rows: int
    problems: list[str]
    covered: list[Covered]
    inputs_logged: bool
    unseen: dict[str, int]
    versions: dict[str, VersionPart]
    labels: LabelRows | None


def merge(parts: list[SegmentPart], attrs: list[str]) -> Merged:
    versions: dict[str, VersionPart] = {}
    unseen: dict[str, int] = {}
    for p in parts:
        for v, vp in p.versions.items():
            versions[v] = vp if v not in versions else versions[v].merge(vp)
        for k, c in p.unseen.items():
            unseen[k] = unseen.get(k, 0) + c
    logged = [p.inputs_logged for p in parts if p.inputs_logged is not None]
    lab = [p.labels for p in parts if p.labels is not None]
    return Merged(
        parts=parts,
        requests=sum(p.requests for p in parts),
        rows=sum(p.rows for p in parts),
        problems=[q for p in parts for q in p.problems],
        covered=[p.covered for p in parts if p.covered is not None],
        inputs_logged=any(logged) if logged else True,
        unseen=unseen,
        versions=versions,
        labels=LabelRows.concat(lab, attrs) if lab else None,
    )


def fairness_arrays(
    vp: VersionPart, attr: str, lab_groups: np.ndarray, lab_dec: np.ndarray, lab_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows as fairness_stats reads them: the labeled rows as they are, the others rebuilt
    from the group x decision counts (the statistics depend on counts only)."""
    cells = dict(vp.groups.get(attr, {}))
    for g, d in zip(lab_groups.tolist(), lab_dec.tolist(), strict=True):
        k = (None if g is None else str(g), bool(d))
        cells[k] = cells.get(k, 0) - 1
    gs: list[np.ndarray] = [np.asarray(lab_groups, dtype=object)]
    ds: list[np.ndarray] = [np.asarray(lab_dec, dtype=bool)]
    ys: list[np.ndarray] = [np.asarray(lab_y, dtype=float)]
    for (g, d), c in cells.items():
        if c > 0:
            gs.append(np.full(c, g, dtype=object))
            ds.append(np.full(c, d, dtype=bool))
            ys.append(np.full(c, np.nan))
    return np.concatenate(gs), np.concatenate(ds), np.concatenate(ys)


# ---- caching ---------------------------------------------------------------------------


class PartCache:
    """Parts of closed segments wholly inside a window, signed with the workspace's key.

    A part depends on its segment (head hash), the labels and the sensitive attributes (the
    ``context`` in its file name) and on the reference profile of each version it holds
    (checked on ``get``: a version registered later leaves parts without its traffic
    valid)."""

    def __init__(self, folder: Path, key: bytes, context: str, profile_of: ProfileOf) -> None:
        self.folder = folder
        self._key = hashlib.sha256(b"insight-monitor-partials:" + key).digest()
        self.context = context  # labels, attributes
        self._profile_of = profile_of

    def _path(self, seg: Path) -> tuple[Path, str] | None:
        head, problem = _read_head(seg.with_suffix(".head"))
        if head is None or problem or not head.get("closed"):
            return None
        tag = hashlib.sha256(
            f"{VERSION}|{seg.name}|{head['seq']}|{head['hash']}|{self.context}".encode()
        ).hexdigest()[:24]
        return self.folder / f"{seg.name}.{tag}.part", tag

    def wholly_inside(self, seg: Path, t_from: float, t_to: float) -> bool:
        head, problem = _read_head(seg.with_suffix(".head"))
        if head is None or problem or not head.get("closed"):
            return False
        lo, hi = head.get("t_min"), head.get("t_max")
        return (
            isinstance(lo, int | float)
            and isinstance(hi, int | float)
            and lo >= t_from
            and hi < t_to
        )

    def get(self, seg: Path) -> SegmentPart | None:
        where = self._path(seg)
        if where is None or not where[0].is_file():
            return None
        blob = where[0].read_bytes()
        mac, body = blob[:32], blob[32:]
        if not hmac.compare_digest(mac, hmac.new(self._key, body, hashlib.sha256).digest()):
            return None  # not written by this workspace: recompute
        part = pickle.loads(body)
        if not isinstance(part, SegmentPart):
            return None
        for v in part.versions:
            if part.profiles.get(v, "?") != profile_fingerprint(self._profile_of(v)):
                return None  # this version's reference changed since: recompute
        part.cached = True
        return part

    def put(self, seg: Path, part: SegmentPart) -> None:
        from engine.workspace import atomic_write_bytes

        where = self._path(seg)
        if where is None or part.problems:
            return
        body = pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)
        mac = hmac.new(self._key, body, hashlib.sha256).digest()
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob(f"{seg.name}.*.part"):  # older parts of this segment
            if old != where[0]:
                old.unlink(missing_ok=True)
        atomic_write_bytes(where[0], mac + body)


def context_fingerprint(keys: LabelKeys | None, attrs: list[str]) -> str:
    blob = json.dumps(
        {"labels": keys.fingerprint if keys else None, "attrs": attrs}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def profile_fingerprint(p: dict[str, Any] | None) -> str | None:
    if p is None:
        return None
    return hashlib.sha256(json.dumps(p, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- running over segments -------------------------------------------------------------


def _ray_parts(
    paths: list[Path],
    t_from: float,
    t_to: float,
    profiles: dict[str, dict[str, Any] | None],
    attrs: list[str],
    keys: LabelKeys | None,
    groups: int,
) -> list[SegmentPart]:
    import ray

    @ray.remote(num_cpus=1)
    def task(batch: list[str]) -> list[SegmentPart]:
        return [segment_part(Path(p), t_from, t_to, profiles.get, attrs, keys) for p in batch]

    chunks = [paths[i::groups] for i in range(groups)]
    refs = [task.remote([str(p) for p in c]) for c in chunks if c]
    got = {p.segment: p for ps in ray.get(refs) for p in ps}
    return [got[p.name] for p in paths]


def window_parts(
    chosen: list[Path],
    t_from: float,
    t_to: float,
    profiles: dict[str, dict[str, Any] | None],
    profile_of: ProfileOf,
    attrs: list[str],
    keys: LabelKeys | None,
    *,
    cache: PartCache | None,
    threads: int,
    ray_tasks: int = 0,
) -> tuple[list[SegmentPart], str]:
    """The parts of ``chosen`` (in their order): from the cache where a closed segment lies
    wholly in the window, else computed on ``threads`` threads, or in ``ray_tasks`` Ray
    tasks (one per group of segments) when that is above zero."""
    parts: dict[str, SegmentPart] = {}
    todo: list[Path] = []
    for p in chosen:
        hit = cache.get(p) if cache is not None and cache.wholly_inside(p, t_from, t_to) else None
        if hit is not None:
            parts[p.name] = hit
        else:
            todo.append(p)
    if ray_tasks > 0 and len(todo) > 1:
        computed = _ray_parts(todo, t_from, t_to, profiles, attrs, keys, min(ray_tasks, len(todo)))
        how = f"ray: {min(ray_tasks, len(todo))} tasks"
    else:
        n = max(1, min(threads, len(todo) or 1))
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="monitor-part") as pool:
            computed = list(
                pool.map(lambda p: segment_part(p, t_from, t_to, profile_of, attrs, keys), todo)
            )
        how = f"threads: {n}"
    for p, part in zip(todo, computed, strict=True):
        parts[p.name] = part
        if cache is not None and cache.wholly_inside(p, t_from, t_to):
            cache.put(p, part)
    return [parts[p.name] for p in chosen], how
