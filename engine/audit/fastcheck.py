"""Verifying a format-2 segment without a Python loop over its fields.

A format-2 line ends with ``,"seq":N,"prev":"<64 hex>","hash":"<64 hex>"}`` (chain.encode),
so where every field of the chain sits follows from where the line ends. ``check_clean``
finds the lines with NumPy, hashes each (OpenSSL's SHA-256: the only per-line Python left)
and checks the whole segment in one compiled pass: every line's layout, every hash against
its content, every ``prev`` against the line before, the sequence numbers 0, 1, 2, ...,
the first record and the head.

It answers only "clean": when anything is off (a damaged line, a gap, a different layout of
the line) it returns False and the line-by-line check names each problem
(verify._check_lines). Both paths agree on what is clean: tests/test_explain_audit.py
tampers with segments and checks every report, tests/test_monitor_window.py compares them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from numba import njit

from engine.audit.chain import genesis

_TAIL = 9 + 64 + 2  # ,"hash":"  64 hex  "}
_HASH_KEY = np.frombuffer(b',"hash":"', np.uint8).copy()
_PREV_KEY = np.frombuffer(b',"prev":"', np.uint8).copy()
_SEQ_KEY = np.frombuffer(b',"seq":', np.uint8).copy()
_HEXDIGITS = np.frombuffer(b"0123456789abcdef", np.uint8).copy()


@njit(cache=True, nogil=True)
def _same(buf: np.ndarray, at: int, key: np.ndarray) -> bool:
    for j in range(key.size):  # noqa: SIM110 (compiled: a plain loop)
        if buf[at + j] != key[j]:
            return False
    return True


@njit(cache=True, nogil=True)
def _chain_ok(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    digests: np.ndarray,
    first_prev: np.ndarray,
    hash_key: np.ndarray,
    prev_key: np.ndarray,
    seq_key: np.ndarray,
    hexdigits: np.ndarray,
) -> bool:
    """Every line laid out as format 2, with seq i, prev = the hash before (first_prev for
    line 0) and a stored hash equal to its digest (raw bytes, 32 per line)."""
    n = starts.size
    for i in range(n):
        s, e = starts[i], ends[i]
        k = e - 75  # ,"hash":"
        p = k - 74  # ,"prev":"
        if p - s < 8 or buf[e - 2] != 34 or buf[e - 1] != 125 or buf[k - 1] != 34:
            return False
        if not (_same(buf, k, hash_key) and _same(buf, p, prev_key)):
            return False
        # seq: digits right before ,"prev":" and after ,"seq":
        v, q = i, p - 1
        while True:
            if buf[q] != 48 + v % 10:
                return False
            v //= 10
            q -= 1
            if v == 0:
                break
        if not _same(buf, q - 6, seq_key):
            return False
        for j in range(32):
            b = digests[i, j]
            if buf[k + 9 + 2 * j] != hexdigits[b >> 4] or buf[k + 10 + 2 * j] != hexdigits[b & 15]:
                return False
        for j in range(64):
            want = first_prev[j] if i == 0 else buf[ends[i - 1] - 66 + j]
            if buf[p + 9 + j] != want:
                return False
    return True


@njit(cache=True, nogil=True)
def _newlines(buf: np.ndarray) -> np.ndarray:
    """Positions of the newlines (no temporary the size of the buffer)."""
    n = 0
    for i in range(buf.size):
        if buf[i] == 10:
            n += 1
    out = np.empty(n, np.int64)
    n = 0
    for i in range(buf.size):
        if buf[i] == 10:
            out[n] = i
            n += 1
    return out


def check_clean(segment: str, data: bytes, head: dict[str, Any] | None) -> tuple[bool, int]:
    """(clean, records) for ``data``, the complete lines of a segment (ending with a
    newline). ``clean`` is False when any line needs the line-by-line check."""
    if not data:
        return head is None or int(head["seq"]) < 0, 0
    buf = np.frombuffer(data, np.uint8)
    ends = _newlines(buf)
    n = ends.size
    if n == 0 or ends[-1] != buf.size - 1:
        return False, 0
    starts = np.empty(n, np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    k = ends - _TAIL
    if (k - starts).min() < 90:
        return False, 0
    # What each hash covers: the line up to ,"hash":" closed with "}" (no copy of the data:
    # fresh memory costs more here than the hashing).
    mv = memoryview(data)
    sha = hashlib.sha256
    digests_l = []
    for s, e in zip(starts.tolist(), k.tolist(), strict=True):
        h = sha(mv[s:e])
        h.update(b"}")
        digests_l.append(h.digest())
    digest = b"".join(digests_l)
    mv.release()
    digests = np.frombuffer(digest, np.uint8).reshape(n, 32)
    first_prev = np.frombuffer(genesis(segment).encode(), np.uint8)
    if not _chain_ok(
        buf, starts, ends, digests, first_prev, _HASH_KEY, _PREV_KEY, _SEQ_KEY, _HEXDIGITS
    ):
        return False, 0
    try:
        if json.loads(data[: ends[0]]).get("segment") != segment:
            return False, 0
    except (ValueError, AttributeError):
        return False, 0
    if head is not None:
        hs = int(head["seq"])
        if hs >= n or (hs >= 0 and digests[hs].tobytes().hex() != head["hash"]):
            return False, 0
    return True, n
