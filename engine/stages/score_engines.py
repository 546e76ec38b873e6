"""The two ways a table is scored (engine.stages.score chooses): Ray Data over the
cluster's CPUs, one task per block, or this process, batch by batch. Both read the input
the same way, score each batch with :func:`score_batch`, and write Parquet into a temp
folder beside the output that is renamed whole at the end; a scoring error is the same
clear message, with nothing written.

``auto``: Ray Data when a cluster is there to spread over (:func:`engine.raycluster.ray_wanted`:
Ray already up here, or a cluster named: ``--address``, the profile's ``ray:``,
``RAY_ADDRESS``, every submitted job); else this process, whatever the table's size (it
streams batch by batch). On one machine a single process scores faster than Ray Data
(benchmarks/RESULTS.md: Ray Data was 0.27x one process on 1,000,000 rows), and a table of a
few thousand rows does not wait ~10 s for a local Ray cluster to start. ``--engine``
overrides; the output says which ran and why.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import DataError, InsightError
from engine.workspace import Workspace

ENGINES = ("auto", "ray", "local")


@dataclass
class ScoringJob:
    """What both engines need: the input's files and how to read them, the model, the
    per-batch arguments of :func:`score_batch`, where to write, and how much."""

    files: list[str]
    csv_args: dict[str, Any] | None  # pyarrow's CSV options; None: Parquet
    cols: list[str]
    scorer: Any
    kw: dict[str, Any]  # score_batch's keyword arguments (name, version, ..., fields)
    output: Path
    src: Path
    batch_size: int
    limit: int | None
    log: Callable[..., Any]

    @property
    def users_table(self) -> bool:
        return self.kw["fields"] is not None

    def csv_options(self, base: dict[str, Any]) -> dict[str, Any]:
        """pyarrow's CSV options from ``base``; the user's own table reads every cell as
        text, as the build reads the source."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        args = dict(base)
        if self.users_table:
            args["convert_options"] = pacsv.ConvertOptions(
                column_types=dict.fromkeys(self.cols, pa.string())
            )
        return args


# Per worker process (Ray reuses workers across tasks): the scorer fetched once from the
# object store, and its SHAP explainer, keyed by the object's id.
_WORKER_CACHE: dict[str, tuple[Any, dict[str, Any]]] = {}


def _model(scorer_ref: Any) -> tuple[Any, dict[str, Any]]:
    import ray

    key = scorer_ref.hex()
    if key not in _WORKER_CACHE:
        _WORKER_CACHE.clear()  # one model per worker at a time
        _WORKER_CACHE[key] = (ray.get(scorer_ref), {})
    return _WORKER_CACHE[key]


def score_batch(
    batch: Any,
    *,
    scorer_ref: Any,
    name: str,
    version: str,
    threshold: float,
    keep: list[str],
    shap: bool,
    fields: Any = None,
    local: tuple[Any, dict[str, Any]] | None = None,
    consent: Any = None,
) -> pd.DataFrame:
    """Score one pandas batch (a Ray Data task: fused with the read, on any CPU). The model
    comes through the object store: loaded from MLflow once, by the driver, not once per
    worker (workers import neither MLflow nor the registry). ``fields``: the batch is the
    user's own table, read by /predict's row contract (serve.inputs.table_frame).
    ``local``: (scorer, cache) in this process (the local engine), instead of the ref."""
    scorer, cache = local if local is not None else _model(scorer_ref)
    features = list(scorer.features)
    if fields is not None:
        from fastapi import HTTPException

        from serve.inputs import table_frame

        try:
            raw, ids, unparsed = table_frame(batch, scorer.schema, fields)
        except HTTPException as exc:  # the row contract's words, for a table
            import re

            raise DataError(
                re.sub(r"rows\[(\d+)\]", r"row \1 of a batch", str(exc.detail))
            ) from None
        x = scorer.schema.frame(raw)
        out = pd.DataFrame(index=range(len(batch)))
        if ids is not None:
            out[fields.key] = ids
        for c in keep:
            out[fields.aliases.get(c, c)] = batch[c].to_numpy()
        out["unparsed_cells"] = unparsed
    else:
        x = scorer.schema.frame(batch[features])
        out = batch[keep].reset_index(drop=True).copy()
    p = np.asarray(scorer.proba(x), dtype=np.float64)
    out["score"] = p
    out["decision"] = p >= threshold
    if consent is not None:  # no automated decision without consent (engine.governance)
        subjects = (
            ids
            if fields is not None
            else batch[consent.key].to_numpy()
            if consent.key in batch
            else None
        )
        out = consent.withhold(out, subjects)
    out["model"] = name
    out["model_version"] = version
    if shap:
        if "e" not in cache:
            from engine.train.families import explainer_for

            cache["e"] = explainer_for(scorer)
        e = cache["e"].explain(x)
        for j, f in enumerate(features):
            out[f"shap_{f}"] = e.values[:, j]
    return out


def _counts(folder: Path) -> tuple[int, int]:
    """Rows (from the Parquet footers) and positive decisions (one column read) of the
    written output, without a second pass through Ray."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if not folder.exists():  # an empty input: Ray writes no file at all
        folder.mkdir(parents=True)
        return 0, 0
    d = ds.dataset(str(folder), format="parquet")
    rows = d.count_rows()
    decided = pc.sum(d.to_table(columns=["decision"])["decision"]).as_py() if rows else 0
    return int(rows), int(decided or 0)


def withheld_count(folder: Path) -> int:
    """Rows given no decision for want of consent (output column ``withheld``)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    d = ds.dataset(str(folder), format="parquet")
    if "withheld" not in d.schema.names or not d.count_rows():
        return 0
    return int(pc.sum(pc.is_valid(d.to_table(columns=["withheld"])["withheld"])).as_py() or 0)


def _unparsed(folder: Path) -> int:
    """Cells of the user's table that did not read (scored as missing), in all."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    d = ds.dataset(str(folder), format="parquet")
    if "unparsed_cells" not in d.schema.names or not d.count_rows():
        return 0
    return int(pc.sum(d.to_table(columns=["unparsed_cells"])["unparsed_cells"]).as_py() or 0)


def use_ray(engine: str, ws: Workspace, files: list[str]) -> bool:
    """Ray Data for ``engine='ray'``; for ``auto``, when there is a cluster (see module)."""
    return choose(engine, ws)[0]


def choose(engine: str, ws: Workspace) -> tuple[bool, str]:
    """Whether to score on Ray Data, and why (said in the output)."""
    from engine.raycluster import ray_wanted

    if engine == "ray":
        return True, "--engine ray"
    if engine == "local":
        return False, "--engine local"
    if ray_wanted(ws):
        return True, "auto: a Ray cluster is named or up (--engine local to score here)"
    return False, "auto: one machine, no cluster named (--engine ray for Ray Data)"


def _failed(src: Path, exc: BaseException, where: str = "") -> DataError:
    text = next((x for x in str(exc).splitlines() if x.strip()), repr(exc))
    return DataError(
        f"score: scoring '{src}' failed{where}: {text[:400]}. Nothing was written. Fix: check "
        "the table's values against the model's input schema (`insight models show`)."
    )


def _temp_beside(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    return output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"


def _batches(job: ScoringJob) -> Iterator[Any]:
    """The input's record batches, read as Ray Data reads them (Parquet as stored; CSV with
    the sniffed dialect)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    for f in job.files:
        if job.csv_args is None:
            yield from pq.ParquetFile(f).iter_batches(batch_size=job.batch_size)
            continue
        args = job.csv_options(job.csv_args)
        ro = args.get("read_options") or pacsv.ReadOptions()
        args["read_options"] = pacsv.ReadOptions(encoding=ro.encoding, block_size=1 << 22)
        with pacsv.open_csv(f, **args) as reader:
            yield from reader


def score_here(job: ScoringJob) -> tuple[int, int]:
    """The local engine: batch by batch through :func:`score_batch` in this process, one
    Parquet file per batch into the temp folder. Returns (rows, decided)."""
    local: tuple[Any, dict[str, Any]] = (job.scorer, {})
    tmp = _temp_beside(job.output)
    tmp.mkdir()
    try:
        left = job.limit
        for k, rb in enumerate(_batches(job)):
            if left is not None:
                if left <= 0:
                    break
                rb = rb.slice(0, left)
                left -= rb.num_rows
            if rb.num_rows == 0:
                continue
            try:
                out = score_batch(rb.to_pandas(), scorer_ref=None, local=local, **job.kw)
            except InsightError:
                raise
            except Exception as exc:
                raise _failed(job.src, exc) from None
            out.to_parquet(tmp / f"part-{k:05d}.parquet", index=False)
        return _publish(tmp, job)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def score_on_ray(ws: Workspace, job: ScoringJob) -> tuple[int, int, int]:
    """Ray Data: read, score (fused with the read, on any free CPU) and write in tasks.
    Returns (rows, decided, CPUs)."""
    import ray

    from engine.raycluster import start_ray

    start_ray(ws)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_arrow_backed_pandas_conversion = False
    ctx.enable_progress_bars = False
    cpus = int(ray.cluster_resources().get("CPU", 1))
    blocks = max(2 * cpus, len(job.files))
    if job.csv_args is None:
        data = ray.data.read_parquet(job.files, override_num_blocks=blocks)
    else:
        data = ray.data.read_csv(
            job.files, override_num_blocks=blocks, **job.csv_options(job.csv_args)
        )
    if job.limit is not None:  # a smoke run: the first rows only
        data = data.limit(job.limit)
    # Tasks, not an actor pool: each read block is scored in the task that read it, on any
    # free CPU (an actor pool holding every CPU starved the read tasks on a 2-CPU cluster).
    fn: Any = score_batch
    scored = data.map_batches(
        fn,
        fn_kwargs={"scorer_ref": ray.put(job.scorer), **job.kw},
        batch_format="pandas",
        batch_size=job.batch_size,
        num_cpus=1,
    )
    tmp = _temp_beside(job.output)
    try:
        try:
            scored.write_parquet(str(tmp))
        except Exception as exc:  # a worker's error, wrapped by Ray: name the cause
            raise _failed(job.src, getattr(exc, "cause", None) or exc, " in a worker") from None
        rows, positive = _publish(tmp, job)
        return rows, positive, cpus
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, job: ScoringJob) -> tuple[int, int]:
    """Count the written rows, then rename ``tmp`` to the output (an older output is
    replaced only now, once the new one is complete). Returns (rows, decided)."""
    rows, positive = _counts(tmp)
    if job.users_table and (bad := _unparsed(tmp)):
        job.log(f"{bad:,} cell(s) of '{job.src.name}' did not read and were scored as missing")
    output = job.output
    if output.exists():
        old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(output, old)
        os.replace(tmp, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, output)
    return int(rows), int(positive)
