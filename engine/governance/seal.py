"""Sealed audit records: each subject's part of a record encrypted under their own key.

A served record (``decision``, ``withheld``) answers for one or more rows, one subject each.
Sealing moves everything per row that identifies or describes the subject into one AES-GCM
ciphertext under that subject's key (engine.governance.keys):

- ``ids``, ``x`` (numeric inputs), ``xc`` (categorical), ``g`` (sensitive groups),
  ``input_hashes``, ``scores``, ``decisions``, the shadow's ``scores`` and the ``reasons``
  of a withheld row;

and leaves in the clear what is about the system: the route, request id, time, model,
versions (per row), generation, layout, threshold, latency. The record gets ``kids`` (the
key id of each row, random: see keys) and ``sealed`` (per row: base64 of a 12-byte nonce
and the ciphertext; the associated data binds it to its key id, request and row, so a
ciphertext moved to another record does not open).

A record whose rows carry no ids is not sealed: there is no subject whose key it could be,
and nobody could ask to erase it.

Reading (:func:`unseal_record`, :func:`unseal_table`): every reader of the log (the
monitor's window, exports, the review queue) sees records as they were written, except the
rows of erased subjects: their key is gone, and the row is left out of the record (its
version too), so a record of three rows of which one subject was erased reads as a record
of two. Counted in ``erased_rows``.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.governance.keys import KeyStore

# per row: record field -> short key in the sealed payload
_LISTS = {"ids": "i", "x": "x", "xc": "c", "g": "g", "input_hashes": "h", "scores": "s",
          "decisions": "d", "reasons": "r"}  # fmt: skip


_FLOATS = ("s", "sh", "x")  # packed as float64 after the head (None as NaN)


def _pack(row: dict[str, Any]) -> bytes:
    """A row's payload: version byte 1, the head's length (2 bytes), the head as JSON (the
    id, categories, groups, decision, reasons), then the numbers as float64 (score, shadow
    score, inputs; a missing one as NaN, which the log never holds otherwise: engine.audit
    logs a NaN input as missing). About three times cheaper than all of it as JSON."""
    head = {k: v for k, v in row.items() if k not in _FLOATS}
    nums: list[Any] = []
    flags = []
    for k in ("s", "sh"):
        if k in row:
            flags.append(1)
            nums.append(row[k])
        else:
            flags.append(0)
    x = row.get("x")
    flags.append(-1 if x is None else len(x))
    if x:
        nums.extend(x)
    head["n"] = flags
    hb = json.dumps(head, separators=(",", ":")).encode()
    fb = np.asarray(nums, dtype=np.float64).tobytes() if nums else b""
    return b"\x01" + len(hb).to_bytes(2, "little") + hb + fb


def _unpack(blob: bytes) -> dict[str, Any]:
    if blob[:1] == b"{":  # all JSON (what the first sealed records were)
        return dict(json.loads(blob))
    hl = int.from_bytes(blob[1:3], "little")
    row: dict[str, Any] = json.loads(blob[3 : 3 + hl])
    has_s, has_sh, nx = row.pop("n")
    vals = np.frombuffer(blob, dtype="<f8", offset=3 + hl).tolist()
    k = 0
    if has_s:
        row["s"] = vals[0]
        k = 1
    if has_sh:
        row["sh"] = vals[k]
        k += 1
    if nx >= 0:
        row["x"] = [None if v != v else v for v in vals[k : k + nx]]
    return row


# per kind of record: the field naming each row's subject, and the per-row fields sealed
_KINDS: dict[str, tuple[str, dict[str, str]]] = {
    "decide": ("keys", {"keys": "i", "inputs": "in", "decisions": "dd"}),  # targeting
}


def _fields(rec: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return _KINDS.get(str(rec.get("kind")), ("ids", _LISTS))


def _aad(kid: str, request_id: str, row: int) -> bytes:
    return f"{kid}|{request_id}|{row}".encode()


def seal_record(rec: dict[str, Any], keys: KeyStore) -> dict[str, Any]:
    """The record with each row's personal fields sealed (see the module doc); a record
    without ids is returned as it is. Raises KeyStoreError when the keys cannot be had:
    nothing personal is then written at all."""
    id_field, lists = _fields(rec)
    ids = rec.get(id_field)
    if not ids or rec.get("kids") is not None:
        return rec
    n = len(ids)
    pairs = keys.keys_for([str(i) for i in ids])
    shadow = rec.get("shadow")
    per_row: list[dict[str, Any]] = [{} for _ in range(n)]
    for field, short in lists.items():
        vals = rec.get(field)
        if isinstance(vals, list) and len(vals) == n:
            for i in range(n):
                per_row[i][short] = vals[i]
    if isinstance(shadow, dict) and isinstance(shadow.get("scores"), list):
        for i, v in enumerate(shadow["scores"][:n]):
            per_row[i]["sh"] = v
    rid = str(rec.get("request_id", ""))
    sealed, kids = [], []
    for i, (kid, aead) in enumerate(pairs):
        nonce = os.urandom(12)
        ct = aead.encrypt(nonce, _pack(per_row[i]), _aad(kid, rid, i))
        sealed.append(base64.b64encode(nonce + ct).decode())
        kids.append(kid)
    out = {k: v for k, v in rec.items() if k not in lists}
    if isinstance(shadow, dict):
        out["shadow"] = {"version": shadow.get("version"), "scores": None}
    out["kids"] = kids
    out["sealed"] = sealed
    return out


def open_rows(
    kids: list[str], sealed: list[str], request_id: str, ciphers: dict[str, Any]
) -> list[dict[str, Any] | None]:
    """Each row's payload, or None where its key is gone (erased)."""
    return [
        _open(ciphers, kid, s, request_id, i)
        for i, (kid, s) in enumerate(zip(kids, sealed, strict=True))
    ]


def _open(
    ciphers: dict[str, Any], kid: str, sealed: str, request_id: str, row: int
) -> dict[str, Any] | None:
    """One row's payload; None where its key is gone, or where the ciphertext does not
    open here (moved or changed: the chain check names that record)."""
    from cryptography.exceptions import InvalidTag

    aead = ciphers.get(kid)
    if aead is None:
        return None
    raw = base64.b64decode(sealed)
    try:
        return _unpack(aead.decrypt(raw[:12], raw[12:], _aad(kid, request_id, row)))
    except InvalidTag:
        return None


def unseal_record(
    rec: dict[str, Any], keys: KeyStore | None, ciphers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The record as written, less the rows of erased subjects (see the module doc)."""
    kids, sealed = rec.get("kids"), rec.get("sealed")
    if not kids or sealed is None:
        return rec
    if ciphers is None:
        ciphers = keys.ciphers(kids) if keys is not None else {}
    rows = open_rows(kids, sealed, str(rec.get("request_id", "")), ciphers)
    keep = [i for i, r in enumerate(rows) if r is not None]
    out = {k: v for k, v in rec.items() if k not in ("kids", "sealed")}
    id_field, lists = _fields(rec)
    for field, short in lists.items():
        if any(short in (rows[i] or {}) for i in keep) or (
            field == id_field and keep  # the ids are what sealed it: always there
        ):
            out[field] = [rows[i].get(short) for i in keep]  # type: ignore[union-attr]
    if out.get("kind") == "decide":  # its versions are the set used, not one per row
        pass
    elif isinstance(out.get("versions"), list) and len(out["versions"]) == len(rows):
        out["versions"] = [out["versions"][i] for i in keep]
    shadow = out.get("shadow")
    if isinstance(shadow, dict) and any("sh" in (rows[i] or {}) for i in keep):
        out["shadow"] = {**shadow, "scores": [rows[i].get("sh") for i in keep]}  # type: ignore[union-attr]
    if len(keep) < len(rows):
        out["erased_rows"] = len(rows) - len(keep)
    sf = out.get("subject_field")
    if isinstance(sf, str) and out.get("kind") not in ("decision", "withheld"):
        ids = out.pop("ids", None) or []
        out.pop("subject_field", None)
        if ids:
            out[sf] = ids[0]
        return out
    if not keep:
        out[id_field] = []
        if out.get("kind") == "decision":
            out["scores"], out["decisions"] = [], []
        if out.get("kind") == "decide":
            out["inputs"], out["decisions"] = [], []
    return out


def unseal_table(table: pa.Table, keys: KeyStore | None) -> pa.Table:
    """A segment's records (columns of engine.audit.columnar's schema) with their sealed
    rows opened in place; the other records are untouched (one take over the parts).
    Decision records are opened column-wise (:func:`_open_decisions`: one decryption and
    one JSON parse per row, the lists rebuilt as Arrow arrays); others (withheld, control
    records: few) one by one."""
    if "sealed" not in table.column_names:
        return table
    has = pc.is_valid(table.column("sealed")).to_numpy(zero_copy_only=False)
    if not has.any():
        return table
    is_dec = pc.equal(table.column("kind"), "decision").to_numpy(zero_copy_only=False)
    is_dec = np.asarray(pc.fill_null(pa.array(is_dec), False).to_numpy(zero_copy_only=False))
    fast = np.flatnonzero(has & is_dec)
    slow = np.flatnonzero(has & ~is_dec)
    all_kids = set(
        pc.unique(pc.list_flatten(table.column("kids").combine_chunks())).to_pylist()
    ) - {None}
    ciphers = keys.ciphers(all_kids) if keys is not None else {}
    pieces: list[pa.Table] = []
    where: list[np.ndarray] = []
    clear = np.flatnonzero(~has)
    if clear.size:
        pieces.append(table.take(pa.array(clear)))
        where.append(clear)
    if fast.size:
        pieces.append(_open_decisions(table.take(pa.array(fast)), ciphers))
        where.append(fast)
    if slow.size:
        pieces.append(_open_one_by_one(table.take(pa.array(slow)), ciphers, table.schema))
        where.append(slow)
    both = pa.concat_tables(pieces)
    order = np.empty(table.num_rows, np.int64)
    order[np.concatenate(where)] = np.arange(table.num_rows)
    return both.take(pa.array(order))


def _open_one_by_one(part: pa.Table, ciphers: dict[str, Any], schema: pa.Schema) -> pa.Table:
    recs = []
    for v in part.to_pylist():
        rh = v.pop("rh", None)
        extra = v.get("extra")
        body = {k: x for k, x in v.items() if x is not None}
        if extra:
            body.update(json.loads(extra))
        opened = unseal_record(body, None, ciphers)
        rest = {k: x for k, x in opened.items() if k not in schema.names}
        row = {k: x for k, x in opened.items() if k in schema.names}
        row["extra"] = json.dumps(rest, sort_keys=True, separators=(",", ":")) if rest else None
        row["rh"] = rh
        recs.append(row)
    return pa.Table.from_pylist(recs, schema=schema)


def _open_decisions(part: pa.Table, ciphers: dict[str, Any]) -> pa.Table:
    """Sealed decision records opened column-wise: each row decrypted, the per-row lists
    (ids, inputs, groups, scores, decisions, versions, shadow scores) rebuilt without the
    rows of erased subjects."""

    kids_col = part.column("kids").combine_chunks()
    n = part.num_rows
    parent = pc.list_parent_indices(kids_col).to_numpy().astype(np.int64)
    kids = pc.list_flatten(kids_col).to_pylist()
    sealed = pc.list_flatten(part.column("sealed").combine_chunks()).to_pylist()
    rids = part.column("request_id").to_pylist()
    starts = np.asarray(kids_col.offsets.to_numpy(), np.int64)
    pos = (np.arange(len(kids)) - starts[parent]).tolist()
    par = parent.tolist()
    rows = [_open(ciphers, kid, sealed[i], rids[par[i]], pos[i]) for i, kid in enumerate(kids)]
    keep = np.fromiter((r is not None for r in rows), bool, len(rows))
    kept = [r for r in rows if r is not None]
    counts = np.bincount(parent[keep], minlength=n)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    first_row = {int(p): r for p, r in zip(parent.tolist(), rows, strict=True) if r is not None}

    def present(short: str) -> pa.Array:
        """Per record: whether the field was there (null where it was not)."""
        return pa.array(
            [short not in first_row[i] if i in first_row else (short != "i")
             for i in range(n)], pa.bool_(),
        )  # fmt: skip

    out = part
    for field, short in _LISTS.items():
        if field not in part.column_names or field == "reasons":
            continue
        typ = part.schema.field(field).type
        if not any(short in r for r in kept):
            if field == "ids":
                arr = pa.ListArray.from_arrays(offsets, pa.array([], pa.string()))
            else:
                continue
        else:
            vals = pa.array([r.get(short) for r in kept], typ.value_type)
            arr = pa.ListArray.from_arrays(offsets, vals, mask=present(short))
        out = out.set_column(out.schema.get_field_index(field), field, arr.cast(typ))
    vers = part.column("versions").combine_chunks()
    if vers.null_count < n and len(pc.list_flatten(vers)) == len(rows):
        flat = pc.list_flatten(vers).filter(pa.array(keep))
        arr = pa.ListArray.from_arrays(offsets, flat)
        out = out.set_column(out.schema.get_field_index("versions"), "versions", arr)
    sh = part.column("shadow").combine_chunks()
    if sh.null_count < n and any("sh" in r for r in kept):
        scores = pa.ListArray.from_arrays(
            offsets, pa.array([r.get("sh") for r in kept], pa.float64()), mask=present("sh")
        )
        st = pa.StructArray.from_arrays(
            [pc.struct_field(sh, "version"), scores], names=["version", "scores"],
            mask=pc.is_null(sh),
        )  # fmt: skip
        out = out.set_column(out.schema.get_field_index("shadow"), "shadow", st.cast(sh.type))
    if not keep.all():  # erased rows: counted in the record's extra fields
        lost = np.bincount(parent[~keep], minlength=n)
        extra = part.column("extra").to_pylist() if "extra" in part.column_names else None
        if extra is not None:
            for i in np.flatnonzero(lost).tolist():
                rest = json.loads(extra[i]) if extra[i] else {}
                rest["erased_rows"] = int(lost[i])
                extra[i] = json.dumps(rest, sort_keys=True, separators=(",", ":"))
            out = out.set_column(
                out.schema.get_field_index("extra"), "extra", pa.array(extra, pa.string())
            )
    for name in ("kids", "sealed"):
        i = out.schema.get_field_index(name)
        out = out.set_column(i, name, pa.nulls(n, out.schema.field(name).type))
    return out


def seal_subject(
    rec: dict[str, Any], workspace_root: Any, field: str = "subject_hash"
) -> dict[str, Any]:
    """A control record that names one subject (a consent change, an export) sealed the
    same way: the field moves into the sealed part, under the subject's key, and reads back
    as it was written (:func:`unseal_record`) until the subject is erased."""
    from pathlib import Path

    from engine.governance.keys import shared, store_root

    value = rec.get(field)
    if value is None:
        return rec
    body = {k: v for k, v in rec.items() if k != field}
    body.update(ids=[str(value)], subject_field=field)
    return seal_record(body, shared(store_root(Path(workspace_root))))
