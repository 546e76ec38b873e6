"""Keyed hashing of PII columns (HMAC-SHA256), identical in Python and in Spark.

The key comes from ``INSIGHT_PII_KEY`` (hex or text) or, failing that, a random key kept in
``<workspace>/secrets/pii.key`` (mode 0600), never in the repository. The Spark expression
computes the same HMAC as :func:`hmac_hex` with built-in functions only (no Python UDF).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from engine.workspace import atomic_write_bytes

if TYPE_CHECKING:
    from pyspark.sql import Column

_BLOCK = 64  # SHA-256 block size in bytes (RFC 2104)


def load_key(workspace_root: Path) -> bytes:
    env = os.environ.get("INSIGHT_PII_KEY")
    if env:
        return env.encode()
    path = workspace_root / "secrets" / "pii.key"
    if not path.is_file():
        atomic_write_bytes(path, secrets.token_hex(32).encode())
        path.chmod(0o600)
    return path.read_bytes().strip()


def key_fingerprint(key: bytes) -> str:
    """A hash of the key, safe to record in manifests (changes when the key changes)."""
    return hashlib.sha256(b"insight-pii-fingerprint:" + key).hexdigest()[:16]


def hmac_hex(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def spark_hmac(col: Column, key: bytes) -> Column:
    """HMAC-SHA256 of a string column as a hex string, built from sha2/unhex/concat."""
    from pyspark.sql import functions as F

    k = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
    k = k.ljust(_BLOCK, b"\x00")
    ipad = bytes(b ^ 0x36 for b in k)
    opad = bytes(b ^ 0x5C for b in k)
    inner = F.unhex(F.sha2(F.concat(F.lit(ipad), F.encode(col.cast("string"), "UTF-8")), 256))
    return F.when(col.isNull(), F.lit(None)).otherwise(F.sha2(F.concat(F.lit(opad), inner), 256))
