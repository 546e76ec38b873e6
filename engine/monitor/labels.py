"""Delayed labels: outcomes that arrive after the decisions, joined to what was served.

``insight labels ingest PATH`` reads a CSV or Parquet file of outcomes, checks all of it
before writing anything, and stores it (content-addressed: the same file twice is stored
once) under ``<workspace>/labels/``. A file holds:

- an id: ``request_id`` (joins the request that file row answers), or the entity key
  (joins the entity's latest decision at or before the label time, at most
  ``monitor.label_horizon`` earlier; without a time, its latest decision);
- the outcome, in the label column (``label.column``), with the project's positive value;
- optionally the label time (``label.event_time``, or ``label_time``);
- optionally the treatment and its outcome (``treatment.column``, ``treatment.outcome``),
  for the live ATE.

Entity ids that are PII are hashed with the workspace's key, as the audit log holds them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.config.project import ProjectConfig
from engine.errors import DataError
from engine.workspace import Workspace, atomic_write_bytes


@dataclass
class Ingested:
    path: Path
    rows: int
    dropped_missing: int
    joined_by: str
    duplicate: bool


def labels_dir(ws: Workspace) -> Path:
    return ws.labels


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(
            f"labels file '{path}' does not exist. Fix: pass the path of a CSV or Parquet file."
        )
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        from engine.data.csvfile import sniff

        d = sniff(path)  # a ';' file, or one saved as Windows-1252, reads as well
        return pd.read_csv(
            path,
            sep=d.delimiter,
            encoding=d.encoding,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
        )
    except Exception as exc:  # a malformed file: say which and why, write nothing
        raise DataError(f"labels file '{path}' could not be read: {exc}") from None


def ingest(cfg: ProjectConfig, ws: Workspace, path: Path) -> Ingested:
    """Check the whole file, then store it; a problem writes nothing."""
    from engine.data.labels import count_values, normalize

    df = _read(path)
    key = _entity_key(cfg)
    id_col = "request_id" if "request_id" in df.columns else key
    y = cfg.label.column
    missing = [c for c in (id_col, y) if c not in df.columns]
    if missing:
        raise DataError(
            f"labels file '{path.name}' lacks column(s) {missing} (columns: "
            f"{', '.join(map(str, df.columns))}). Fix: give each row an id ('request_id' or "
            f"'{key}') and the outcome in '{y}'."
        )
    if df.empty:
        raise DataError(f"labels file '{path.name}' has no rows.")
    import pyarrow as pa

    raw = [None if pd.isna(v) else str(v) for v in df[y].tolist()]
    lv = count_values(y, pa.chunked_array([pa.array(raw, pa.string())]), cfg.label.positive)
    norm = df[y].map(
        lambda v: (
            None
            if v is None or (isinstance(v, float) and v != v) or str(v).strip() == ""
            else normalize(v)
        )
    )
    keep = norm.notna() & df[id_col].notna()
    out = pd.DataFrame(
        {
            "id": df.loc[keep, id_col].astype(str).str.strip(),
            "y": (norm[keep] == lv.positive).astype(np.int8),
        }
    )
    tcol = next((c for c in (cfg.label.event_time, "label_time") if c and c in df.columns), None)
    if tcol is not None:
        t = pd.to_datetime(df.loc[keep, tcol], errors="coerce", utc=True)
        bad = df.loc[keep, tcol][t.isna() & df.loc[keep, tcol].notna()]
        if len(bad):
            raise DataError(
                f"labels file '{path.name}': {len(bad)} value(s) of '{tcol}' are not times "
                f"(e.g. {bad.head(3).tolist()}). Fix: write ISO times such as 2026-01-31T12:00."
            )
        out["time"] = (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    if cfg.treatment is not None:
        for src, dst in ((cfg.treatment.column, "t"), (cfg.treatment.outcome, "o")):
            if src in df.columns:
                vals = pd.to_numeric(df.loc[keep, src], errors="coerce")
                if not vals.dropna().isin([0, 1]).all():
                    raise DataError(
                        f"labels file '{path.name}': '{src}' must be 0/1, got "
                        f"{sorted(set(vals.dropna().tolist()))[:5]}. Fix: encode it as 0/1."
                    )
                out[dst] = vals.to_numpy(dtype=np.float64)
    if id_col == key and _key_is_pii(cfg):
        from engine.pii import hmac_hex, load_key

        k = load_key(ws.root)
        out["id"] = [hmac_hex(k, i) for i in out["id"]]
    out.insert(0, "by", "request" if id_col == "request_id" else "entity")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    dest = labels_dir(ws) / f"labels-{digest}.parquet"
    dup = dest.exists()
    if not dup:
        import io

        buf = io.BytesIO()
        out.to_parquet(buf, index=False)
        atomic_write_bytes(dest, buf.getvalue())
    return Ingested(dest, len(out), int((~keep).sum()), id_col, dup)


def _entity_key(cfg: ProjectConfig) -> str:
    ent = cfg.sources[cfg.label.source].entity
    assert ent is not None
    return cfg.entity_key(ent)


def _key_is_pii(cfg: ProjectConfig) -> bool:
    key = _entity_key(cfg)
    return any(p.split(".", 1)[1] == key for p in cfg.pii)


def load_labels(ws: Workspace) -> pd.DataFrame | None:
    files = sorted(labels_dir(ws).glob("labels-*.parquet"))
    if not files:
        return None
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def join(
    labels: pd.DataFrame | None,
    request_id: np.ndarray,
    request_of_row: np.ndarray,
    entity: np.ndarray,
    row_time: np.ndarray,
    horizon_s: float,
) -> dict[str, np.ndarray]:
    """Per served row: the joined label ``y`` (NaN where none), and ``t``/``o`` (treatment,
    its outcome) where the labels carry them."""
    n = row_time.size
    out = {k: np.full(n, np.nan) for k in ("y", "t", "o")}
    if labels is None or labels.empty or n == 0:
        return out
    cols = [c for c in ("y", "t", "o") if c in labels.columns]
    by_req = labels[labels["by"] == "request"].drop_duplicates("id", keep="last").set_index("id")
    if len(by_req):
        rid = pd.Series(request_id[request_of_row])
        hit = rid.isin(by_req.index).to_numpy()
        for c in cols:
            out[c][hit] = by_req.loc[rid[hit], c].to_numpy(dtype=np.float64)
    by_ent = labels[labels["by"] == "entity"]
    if len(by_ent):
        rows = pd.DataFrame({"id": entity.astype(object), "time": row_time, "row": np.arange(n)})
        rows = rows[rows["id"].notna()].astype({"id": str}).sort_values("time", kind="stable")
        lab = by_ent.astype({"id": str})
        timed = lab[lab["time"].notna()] if "time" in lab.columns else lab.iloc[:0]
        untimed = lab[lab["time"].isna()] if "time" in lab.columns else lab
        hits = []
        if len(timed):
            m = pd.merge_asof(
                timed.sort_values("time", kind="stable"),
                rows,
                on="time",
                by="id",
                direction="backward",
                tolerance=horizon_s if np.isfinite(horizon_s) else None,  # type: ignore[arg-type]
            )
            hits.append(m.dropna(subset=["row"]))
        if len(untimed):  # no time: the entity's latest decision
            last = rows.drop_duplicates("id", keep="last")
            hits.append(untimed.drop(columns=["time"], errors="ignore").merge(last, on="id"))
        if hits:
            m = pd.concat(hits).drop_duplicates("row", keep="last")
            r = m["row"].to_numpy(dtype=np.int64)
            for c in cols:
                out[c][r] = m[c].to_numpy(dtype=np.float64)
    return out


def describe(labels: Any) -> str:
    return "none" if labels is None else f"{len(labels):,} labels"
