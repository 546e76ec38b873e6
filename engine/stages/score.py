"""Stage: batch scoring, the cheaper serving pattern. A registered model scores a table with
Ray Data across the cluster's CPUs, or in this process, and writes Parquet.

Which engine (``engine="auto"``): Ray Data when a Ray cluster is already joined or named
(``--address``, the profile's ``ray:``, ``RAY_ADDRESS``) or the input is larger than
:data:`LOCAL_MAX_BYTES`; otherwise this process, batch by batch (memory bounded by the batch
size). On one machine a single process scores faster than Ray Data (benchmarks/NOTES.md:
Ray Data at 0.27x), and a table of a few thousand rows does not wait ~10 s for a local Ray
cluster to start. Both engines write the same rows (tested).

Input: a feature snapshot (``--snapshot ID``) or any Parquet/CSV table (``--input PATH``)
with the model's feature columns (extra columns are kept as they are: ids, times), or the
user's own table with the source's columns, read by /predict's row contract
(:func:`serve.inputs.table_frame`: the file's names, numbers as text, day counts from its
dates, the key as id; a cell that does not read is missing and counted per row). The
columns are checked against the model's input schema before anything runs. Output: the
input's key columns (the entity key and label time, where present), ``score``, ``decision``
(score >= ``serve.threshold``), ``model`` and ``model_version``, and with ``shap=True`` one
``shap_<feature>`` column per model input (SHAP values in the family's output space).

The output folder appears whole or not at all: Ray writes into a temporary folder beside it,
which is renamed at the end. One ``batch`` record (input and output fingerprints, rows,
model version, seconds) is appended to the audit log (``audit/batch``).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.config.project import ProjectConfig
from engine.errors import ConfigError, DataError
from engine.workspace import Workspace


@dataclass
class ScoreResult:
    model: str
    version: str
    rows: int
    output: Path
    input_fingerprint: str
    output_fingerprint: str
    seconds: float
    rows_per_s: float
    cpus: int
    decision_rate: float


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


# Above this many input bytes, `auto` scores on Ray Data even with no cluster named (the
# process would otherwise be the only CPU busy for minutes).
LOCAL_MAX_BYTES = 256 * 1024 * 1024
ENGINES = ("auto", "ray", "local")


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


def _unparsed(folder: Path) -> int:
    """Cells of the user's table that did not read (scored as missing), in all."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    d = ds.dataset(str(folder), format="parquet")
    if "unparsed_cells" not in d.schema.names or not d.count_rows():
        return 0
    return int(pc.sum(d.to_table(columns=["unparsed_cells"])["unparsed_cells"]).as_py() or 0)


def _files(path: Path) -> list[str]:
    """The data files of a table: the file itself, or a folder's Parquet/CSV files (a
    snapshot's manifest and Spark's marker files are not data)."""
    if path.is_file():
        return [str(path)]
    files = sorted(
        str(p)
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in (".parquet", ".csv")
        and not p.name.startswith((".", "_"))
    )
    if not files:
        raise DataError(f"score: '{path}' holds no .parquet or .csv file.")
    return files


def _columns(path: Path, files: list[str]) -> tuple[list[str], dict[str, Any] | None]:
    """The table's column names and, for a CSV file, pyarrow's reader options: its
    separator and encoding as ``insight init`` finds them (a ';' file saved as
    Windows-1252 reads too), sniffed once for both the header and the read."""
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    from engine.data.csvfile import sniff

    fmt = "csv" if files[0].lower().endswith(".csv") else "parquet"
    try:
        if fmt == "csv":
            args = sniff(Path(files[0])).arrow_options()
            with pacsv.open_csv(files[0], **args) as reader:
                return list(reader.schema.names), args
        return list(ds.dataset(files, format=fmt).schema.names), None
    except Exception as exc:
        raise DataError(
            f"cannot read '{path}' as {fmt}: {str(exc).splitlines()[0][:300]}. Fix: give a "
            "Parquet file or folder, or a .csv file."
        ) from None


def _as_the_users_table(
    cfg: ProjectConfig, features: list[str], cols: list[str]
) -> tuple[Any, list[str]]:
    """/predict's row contract for a table whose columns are the project source's own
    (``rename:``'s left side; dates for the derived day counts), and the features it still
    cannot give (none: the table is scored by that contract)."""
    from serve.inputs import row_fields

    fields = row_fields(cfg)
    have = {fields.aliases.get(c, c) for c in cols} | set(cols)
    derive = fields.derivations()
    missing = [
        f
        for f in features
        if f not in have
        and not (f in derive and all(c in have or c == fields.time for c in derive[f].columns()))
    ]
    return fields, missing


def stage_score(
    cfg: ProjectConfig,
    ws: Workspace,
    model: str | None = None,
    *,
    snapshot: str | None = None,
    input_path: Path | None = None,
    output: Path,
    shap: bool = False,
    batch_size: int = 65536,
    overwrite: bool = False,
    limit: int | None = None,
    record: bool = True,
    engine: str = "auto",
    log: Any = print,
) -> ScoreResult:
    """Score a snapshot or a table with a registered model through Ray Data (one task per
    block) or in this process (``engine``: see module); the output appears whole (temp path,
    then rename) or not at all."""
    from engine.data.sources import fingerprint
    from engine.registry.models import find, load_scorer
    from engine.tracking import setup_mlflow

    if engine not in ENGINES:
        raise ConfigError(f"score: unknown engine '{engine}'. Fix: one of {', '.join(ENGINES)}.")
    name, which = _model_name(cfg, model)
    if (snapshot is None) == (input_path is None):
        raise ConfigError("score: give exactly one of --snapshot ID or --input PATH.")
    output = output.resolve()
    if output.exists() and not overwrite:
        raise ConfigError(
            f"score: output '{output}' already exists. Fix: choose a new path, or pass "
            "--overwrite to replace it (the old one is removed only after the new one is "
            "written)."
        )
    setup_mlflow(ws, cfg.name)
    ref = find(name, which)
    src = _input(cfg, ws, snapshot, input_path)
    files = _files(src)
    cols, csv_args = _columns(src, files)
    fields, keep = _reading(cfg, ref, name, src, cols, log)
    t0 = time.monotonic()
    kw = {
        "name": name,
        "version": ref.version,
        "threshold": cfg.serve.threshold,
        "keep": keep,
        "shap": shap,
        "fields": fields,
    }
    if _use_ray(engine, ws, files):
        rows, positive, cpus = _score_on_ray(
            ws, files, csv_args, cols, load_scorer(ref), kw, output, src, batch_size, limit, log
        )
        where = f"on {cpus} CPU(s), Ray Data"
    else:
        rows, positive = _score_here(
            files, csv_args, cols, load_scorer(ref), kw, output, src, batch_size, limit, log
        )
        cpus, where = 1, "in one process"
    decided = positive / rows if rows else 0.0
    secs = time.monotonic() - t0
    res = ScoreResult(
        model=name,
        version=ref.version,
        rows=int(rows),
        output=output,
        input_fingerprint=fingerprint(src),
        output_fingerprint=fingerprint(output),
        seconds=secs,
        rows_per_s=rows / secs if secs > 0 else 0.0,
        cpus=cpus,
        decision_rate=decided,
    )
    if record:
        _record(ws, res, src, shap)
    log(
        f"scored {res.rows:,} rows with {name} v{ref.version} in {secs:.1f} s "
        f"({res.rows_per_s:,.0f} rows/s {where}); decision rate {decided:.3f} -> {output}"
    )
    return res


def _use_ray(engine: str, ws: Workspace, files: list[str]) -> bool:
    """Ray Data for ``engine='ray'``; for ``auto``, when Ray is already up in this process,
    a cluster is named, or the input is large (see module)."""
    import sys

    if engine != "auto":
        return engine == "ray"
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return True
    if ws.ray_address or os.environ.get("RAY_ADDRESS"):
        return True
    return sum(os.path.getsize(f) for f in files) > LOCAL_MAX_BYTES


def _batches(
    files: list[str], csv_args: dict[str, Any] | None, cols: list[str], fields: Any, size: int
) -> Any:
    """The input's record batches, read as Ray Data reads them (Parquet as stored; CSV with
    the sniffed dialect, every cell as text for the user's own table)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    for f in files:
        if csv_args is None:
            yield from pq.ParquetFile(f).iter_batches(batch_size=size)
            continue
        args = dict(csv_args)
        ro = args.get("read_options") or pacsv.ReadOptions()
        args["read_options"] = pacsv.ReadOptions(encoding=ro.encoding, block_size=1 << 22)
        if fields is not None:
            args["convert_options"] = pacsv.ConvertOptions(
                column_types=dict.fromkeys(cols, pa.string())
            )
        with pacsv.open_csv(f, **args) as reader:
            yield from reader


def _score_here(
    files: list[str],
    csv_args: dict[str, Any] | None,
    cols: list[str],
    scorer: Any,
    kw: dict[str, Any],
    output: Path,
    src: Path,
    batch_size: int,
    limit: int | None,
    log: Any,
) -> tuple[int, int]:
    """The local engine: batch by batch through :func:`score_batch` in this process, one
    Parquet file per batch into a temp folder, renamed whole at the end."""
    from engine.errors import InsightError

    local: tuple[Any, dict[str, Any]] = (scorer, {})
    tmp = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        left = limit
        k = 0
        for rb in _batches(files, csv_args, cols, kw["fields"], batch_size):
            if left is not None:
                if left <= 0:
                    break
                rb = rb.slice(0, left)
                left -= rb.num_rows
            if rb.num_rows == 0:
                continue
            try:
                out = score_batch(rb.to_pandas(), scorer_ref=None, local=local, **kw)
            except InsightError:
                raise
            except Exception as exc:
                text = next((x for x in str(exc).splitlines() if x.strip()), repr(exc))
                raise DataError(
                    f"score: scoring '{src}' failed: {text[:400]}. Nothing was written. Fix: "
                    "check the table's values against the model's input schema (`insight "
                    "models show`)."
                ) from None
            out.to_parquet(tmp / f"part-{k:05d}.parquet", index=False)
            k += 1
        return _publish(tmp, output, src, kw["fields"] is not None, log)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _score_on_ray(
    ws: Workspace,
    files: list[str],
    csv_args: dict[str, Any] | None,
    cols: list[str],
    scorer: Any,
    kw: dict[str, Any],
    output: Path,
    src: Path,
    batch_size: int,
    limit: int | None,
    log: Any,
) -> tuple[int, int, int]:
    import ray

    from engine.raycluster import start_ray

    start_ray(ws)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_arrow_backed_pandas_conversion = False
    ctx.enable_progress_bars = False
    cpus = int(ray.cluster_resources().get("CPU", 1))
    data = _read(files, csv_args, kw["fields"], cols, blocks=max(2 * cpus, len(files)))
    if limit is not None:  # a smoke run: the first rows only
        data = data.limit(limit)
    # Tasks, not an actor pool: each read block is scored in the task that read it, on any
    # free CPU (an actor pool holding every CPU starved the read tasks on a 2-CPU cluster).
    fn: Any = score_batch
    scored = data.map_batches(
        fn,
        fn_kwargs={"scorer_ref": ray.put(scorer), **kw},
        batch_format="pandas",
        batch_size=batch_size,
        num_cpus=1,
    )
    rows, positive = _write_whole(scored, output, src, kw["fields"] is not None, log)
    return rows, positive, cpus


def _model_name(cfg: ProjectConfig, model: str | None) -> tuple[str, str]:
    """'name@alias', 'name/version' or 'name' (the champion) -> (name, alias or version)."""
    name, _, which = (model or cfg.train.model_name).partition("@")
    if "/" in name and not which:
        name, _, which = name.partition("/")
    return name, which or "champion"


def _input(
    cfg: ProjectConfig, ws: Workspace, snapshot: str | None, input_path: Path | None
) -> Path:
    from engine.features import snapshot as snap

    if snapshot is not None:
        return snap.find(ws, cfg.name, None if snapshot == "latest" else snapshot).data
    assert input_path is not None
    src = input_path.resolve()
    if not src.exists():
        raise DataError(f"score: input '{src}' does not exist.")
    return src


def _reading(
    cfg: ProjectConfig, ref: Any, name: str, src: Path, cols: list[str], log: Any
) -> tuple[Any, list[str]]:
    """How the table is read: as a snapshot (the features' names) or as the user's own
    table (the project source's names and types); and which columns go through to the
    output beside the scores."""
    label_time = cfg.label.event_time
    missing = [f for f in ref.features if f not in cols]
    fields = None
    if missing:  # the user's own table, as the project's source has it?
        fields, missing = _as_the_users_table(cfg, ref.features, cols)
    if missing:
        raise DataError(
            f"score: '{src}' lacks the model's input column(s) {missing} (model "
            f"{name} v{ref.version} takes {', '.join(ref.features)}; columns found: "
            f"{', '.join(cols[:20])}). Fix: score a snapshot of this project, or a table "
            "with the source's columns (as `insight init` read them) or the features' names."
        )
    if fields is None:
        keys = [k for k in {e.key for e in cfg.entities.values()} if k in cols]
        return None, [*keys, *([label_time] if label_time and label_time in cols else [])]
    back = {new: old for old, new in fields.aliases.items()}
    keep = [c for c in cols if label_time and c in (label_time, back.get(label_time))]
    log(
        f"'{src.name}' is read as the project's source: its own column names, numbers as "
        "text, day counts from its dates; a cell that does not read is scored as missing "
        "and counted (output column unparsed_cells)"
    )
    return fields, keep


def _read(
    files: list[str], csv_args: dict[str, Any] | None, fields: Any, cols: list[str], blocks: int
) -> Any:
    import ray

    if csv_args is None:
        return ray.data.read_parquet(files, override_num_blocks=blocks)
    import pyarrow as pa
    import pyarrow.csv as pacsv

    args = dict(csv_args)
    if fields is not None:  # every cell as text: read as the build reads the source
        args["convert_options"] = pacsv.ConvertOptions(
            column_types=dict.fromkeys(cols, pa.string())
        )
    return ray.data.read_csv(files, override_num_blocks=blocks, **args)


def _write_whole(
    scored: Any, output: Path, src: Path, users_table: bool, log: Any
) -> tuple[int, int]:
    """Write to a temp path beside ``output``, then rename: the output is whole or absent
    (an older one is replaced only once the new one is complete). Returns (rows, decided)."""
    tmp = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            scored.write_parquet(str(tmp))
        except Exception as exc:  # a worker's error, wrapped by Ray: name the cause
            cause = getattr(exc, "cause", None) or exc
            text = next((x for x in str(cause).splitlines() if x.strip()), repr(cause))
            raise DataError(
                f"score: scoring '{src}' failed in a worker: {text[:400]}. Nothing was "
                "written. Fix: check the table's values against the model's input schema "
                "(`insight models show`)."
            ) from None
        return _publish(tmp, output, src, users_table, log)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, output: Path, src: Path, users_table: bool, log: Any) -> tuple[int, int]:
    """Count the written rows, then rename ``tmp`` to ``output`` (an older output is
    replaced only now, once the new one is complete). Returns (rows, decided)."""
    rows, positive = _counts(tmp)
    if users_table and (bad := _unparsed(tmp)):
        log(f"{bad:,} cell(s) of '{src.name}' did not read and were scored as missing")
    if output.exists():
        old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(output, old)
        os.replace(tmp, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, output)
    return int(rows), int(positive)


def _record(ws: Workspace, res: ScoreResult, src: Path, shap: bool) -> None:
    """One ``batch`` record in the audit log: what was scored, by which version, into what."""
    from engine.audit import AuditWriter

    w = AuditWriter(ws.audit / "batch", writer="score")
    try:
        w.append(
            [
                {
                    "kind": "batch",
                    "time": time.time(),
                    "model": res.model,
                    "model_version": res.version,
                    "input": str(src),
                    "input_fingerprint": res.input_fingerprint,
                    "output": str(res.output),
                    "output_fingerprint": res.output_fingerprint,
                    "rows": res.rows,
                    "shap": shap,
                    "seconds": round(res.seconds, 3),
                }
            ]
        )
    finally:
        w.close()
