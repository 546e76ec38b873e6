"""Stage: batch scoring, the cheaper serving pattern. A registered model scores a table with
Ray Data across the cluster's CPUs, or in this process, and writes Parquet.

Which engine (``engine="auto"``): engine.stages.score_engines. Both write the same rows
(tested).

Input: a feature snapshot (``--snapshot ID``) or any Parquet/CSV table (``--input PATH``)
with the model's feature columns (extra columns are kept as they are: ids, times), or the
user's own table with the source's columns, read by /predict's row contract
(:func:`serve.inputs.table_frame`: the file's names, numbers as text, day counts from its
dates, the key as id; a cell that does not read is missing and counted per row). The
columns are checked against the model's input schema before anything runs. Output: the
input's key columns (the entity key and label time, where present), ``score``, ``decision``
(score >= ``serve.threshold``), ``model`` and ``model_version``, and with ``shap=True`` one
``shap_<feature>`` column per model input (SHAP values in the family's output space).

The output folder appears whole or not at all: each engine writes into a temporary folder beside it,
which is renamed at the end. One ``batch`` record (input and output fingerprints, rows,
model version, seconds) is appended to the audit log (``audit/batch``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.project import ProjectConfig
from engine.errors import ConfigError, DataError
from engine.stages.score_engines import ENGINES, ScoringJob, choose, score_here, score_on_ray
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
    consent = _consent(cfg, ws, fields, keep, snapshot is not None)
    if consent is not None:
        kw["consent"] = consent
    job = ScoringJob(
        files, csv_args, cols, load_scorer(ref), kw, output, src, batch_size, limit, log
    )
    from concurrent.futures import ThreadPoolExecutor

    # The input's fingerprint (SHA-256 of every byte, for the audit record) is hashed in a
    # thread while the rows are scored: OpenSSL releases the GIL.
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-fingerprint")
    input_fp = hasher.submit(fingerprint, src)
    hasher.shutdown(wait=False)
    on_ray, why = choose(engine, ws)
    if on_ray:
        rows, positive, cpus = score_on_ray(ws, job)
        where = f"on {cpus} CPU(s), Ray Data; {why}"
    else:
        rows, positive = score_here(job)
        cpus, where = 1, f"in one process; {why}"
    decided = positive / rows if rows else 0.0
    secs = time.monotonic() - t0
    res = ScoreResult(
        model=name,
        version=ref.version,
        rows=int(rows),
        output=output,
        input_fingerprint=input_fp.result(),
        output_fingerprint=fingerprint(output),
        seconds=secs,
        rows_per_s=rows / secs if secs > 0 else 0.0,
        cpus=cpus,
        decision_rate=decided,
    )
    withheld = None
    if consent is not None:
        from engine.stages.score_engines import withheld_count

        withheld = {
            "rows": withheld_count(output),
            "purposes": list(consent.purposes),
            "policy_version": consent.policy_version,
        }
        log(
            f"no automated decision for {withheld['rows']:,} row(s) without consent to "
            f"{list(consent.purposes)} (column withheld; score and decision left empty)"
        )
    if record:
        _record(ws, res, src, shap, withheld)
    log(
        f"scored {res.rows:,} rows with {name} v{ref.version} in {secs:.1f} s "
        f"({res.rows_per_s:,.0f} rows/s {where}); decision rate {decided:.3f} -> {output}"
    )
    return res


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


def _consent(
    cfg: ProjectConfig, ws: Workspace, fields: Any, keep: list[str], snapshot: bool
) -> Any:
    """The job's consent check (engine.governance.enforce.batch_consent), keyed by the
    user's table's key field or the snapshot's entity key (stored hashed where PII)."""
    from engine.governance.enforce import batch_consent, key_is_hashed

    keys = {e.key for e in cfg.entities.values()}
    key = fields.key if fields is not None else next((k for k in keep if k in keys), None)
    hashed = snapshot and key is not None and key_is_hashed(cfg, key)
    return batch_consent(cfg, ws, key, hashed=hashed)


def _record(
    ws: Workspace,
    res: ScoreResult,
    src: Path,
    shap: bool,
    withheld: dict[str, Any] | None = None,
) -> None:
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
                    "withheld": withheld,
                }
            ]
        )
    finally:
        w.close()
