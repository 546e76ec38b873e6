"""Per-subject keys: what makes the audit log erasable without breaking its chain.

Crypto-shredding: everything a served record holds that identifies or describes a subject
(their id, inputs, sensitive groups, score and decision) is encrypted with AES-GCM under a
key of their own (engine.governance.seal). Erasing the subject deletes the key: the records
stay where they are, their hashes unchanged (``insight audit verify`` still passes), and
nobody can read them any more.

The keys are in their own store, ``<workspace>/keys/subjects.db`` (SQLite, folder mode
0700, file 0600), never in the audit log. A row is ``(ix, kid, key)``:

- ``ix``: HMAC-SHA256 of the subject's id (as served: already hashed where it is PII) under
  the store's own index key (``keys/index.key``); the store never holds the id;
- ``kid``: a random id that the audit records carry to name their key. It is not derived
  from the subject, so after the row is gone nothing links a record to anyone;
- ``key``: 32 random bytes.

Erasure deletes the row with SQLite's ``secure_delete`` on (the freed bytes are zeroed in
the file) and a rollback journal (no write-ahead log keeps old pages), then bumps
``keys/generation``: every process that caches keys (a Serve replica, the monitor) checks
that file's stamp before using its cache and drops the cache when it changed.

A store that cannot be opened or written raises :class:`KeyStoreError`: a writer then
refuses to write the record (serving answers 503) rather than write it in the clear.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import ServiceError
from engine.workspace import atomic_write_bytes

STORE = "subjects.db"
LOCK_WAIT_S = 5.0  # how long a write waits for another process's lock before it fails


class KeyStoreError(ServiceError):
    """The key store cannot be read or written: nothing personal is written in the clear."""


def store_root(workspace_root: Path) -> Path:
    """Where a workspace's key store is (``INSIGHT_KEY_STORE`` moves it elsewhere, e.g. to
    a volume of its own)."""
    env = os.environ.get("INSIGHT_KEY_STORE")
    return Path(env) if env else workspace_root / "keys"


class KeyStore:
    """The subjects' keys (see the module doc). Thread-safe; one per process is enough."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._by_ix: dict[str, tuple[str, AESGCM]] = {}
        self._by_kid: dict[str, AESGCM | None] = {}
        self._ix: dict[str, str] = {}  # subject -> its index (an HMAC: 1.5 us saved a row)
        self._stamp: tuple[int, int] | None = None
        self._db: sqlite3.Connection | None = None
        self._create = create
        self._index_key: bytes | None = None

    # ---- opening ----------------------------------------------------------------------

    def _fail(self, what: str, exc: BaseException) -> KeyStoreError:
        return KeyStoreError(
            f"the key store at '{self.root}' cannot be {what} ({type(exc).__name__}: {exc}); "
            "personal data is not written in the clear. Fix: make that folder readable and "
            "writable by this process (or set INSIGHT_KEY_STORE to where the store is)."
        )

    def _conn(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        try:
            if self._create:
                self.root.mkdir(parents=True, exist_ok=True)
                self.root.chmod(0o700)
            elif not (self.root / STORE).is_file():
                raise FileNotFoundError(f"no {STORE} in it")
            path = self.root / STORE
            fresh = not path.exists()
            db = sqlite3.connect(str(path), timeout=LOCK_WAIT_S, check_same_thread=False)
            db.execute("PRAGMA secure_delete=ON")
            db.execute("PRAGMA journal_mode=DELETE")
            db.execute(
                "CREATE TABLE IF NOT EXISTS keys (ix TEXT PRIMARY KEY, kid TEXT UNIQUE NOT NULL,"
                " key BLOB NOT NULL, created REAL NOT NULL)"
            )
            db.commit()
            if fresh:
                path.chmod(0o600)
            self._index_key = self._load_index_key()
        except (OSError, sqlite3.Error) as exc:
            raise self._fail("opened", exc) from exc
        self._db = db
        return db

    def _load_index_key(self) -> bytes:
        p = self.root / "index.key"
        if not p.is_file():
            if not self._create:
                raise FileNotFoundError("no index.key in it")
            atomic_write_bytes(p, secrets.token_hex(32).encode())
            p.chmod(0o600)
        return p.read_bytes().strip()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ---- the generation stamp ---------------------------------------------------------

    def _fresh(self) -> None:
        """Drop the cached keys when another process erased one (its stamp changed)."""
        try:
            st = (self.root / "generation").stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = (0, 0)
        if stamp != self._stamp:
            self._by_ix.clear()
            self._by_kid.clear()
            self._ix.clear()
            self._stamp = stamp

    # ---- use --------------------------------------------------------------------------

    def index(self, subject: str) -> str:
        """The store's name for a subject (an HMAC under its own key, never the id)."""
        ix = self._ix.get(subject)
        if ix is None:
            self._conn()
            assert self._index_key is not None
            ix = hmac.new(self._index_key, subject.encode(), hashlib.sha256).hexdigest()
            if len(self._ix) > 1_000_000:
                self._ix.clear()
            self._ix[subject] = ix
        return ix

    def all_cached(self, subjects: Iterable[str]) -> bool:
        """Whether every subject's key is in this process's cache (no database access to
        seal their rows; a caller on an event loop seals the others in a thread)."""
        with self._lock:
            self._fresh()
            if self._index_key is None:
                return False
            k = self._index_key
            return all(
                hmac.new(k, s.encode(), hashlib.sha256).hexdigest() in self._by_ix for s in subjects
            )

    def keys_for(self, subjects: Iterable[str]) -> list[tuple[str, AESGCM]]:
        """Each subject's ``(kid, cipher)``, made on first use (one transaction for the new
        ones; concurrent writers agree: the first insert wins)."""
        subs = list(subjects)
        with self._lock:
            self._fresh()
            ixs = [self.index(s) for s in subs]
            missing = sorted({ix for ix in ixs if ix not in self._by_ix})
            if missing:
                self._load(missing)
            return [self._by_ix[ix] for ix in ixs]

    def _load(self, ixs: list[str]) -> None:
        db = self._conn()
        now = time.time()
        try:
            with db:
                db.executemany(
                    "INSERT OR IGNORE INTO keys (ix, kid, key, created) VALUES (?, ?, ?, ?)",
                    [(ix, secrets.token_hex(12), AESGCM.generate_key(256), now) for ix in ixs],
                )
            for i in range(0, len(ixs), 500):
                part = ixs[i : i + 500]
                q = ",".join("?" * len(part))
                for ix, kid, key in db.execute(
                    f"SELECT ix, kid, key FROM keys WHERE ix IN ({q})", part
                ):
                    aead = AESGCM(bytes(key))
                    self._by_ix[ix] = (kid, aead)
                    self._by_kid[kid] = aead
        except sqlite3.Error as exc:
            raise self._fail("written", exc) from exc

    def ciphers(self, kids: Iterable[str]) -> dict[str, AESGCM | None]:
        """The cipher of each key id; None for one that was erased (or never existed)."""
        want = set(kids)
        with self._lock:
            self._fresh()
            missing = [k for k in want if k not in self._by_kid]
            if missing:
                db = self._conn()
                try:
                    for i in range(0, len(missing), 500):
                        part = missing[i : i + 500]
                        q = ",".join("?" * len(part))
                        for kid, key in db.execute(
                            f"SELECT kid, key FROM keys WHERE kid IN ({q})", part
                        ):
                            self._by_kid[kid] = AESGCM(bytes(key))
                except sqlite3.Error as exc:
                    raise self._fail("read", exc) from exc
                for k in missing:
                    self._by_kid.setdefault(k, None)
            return {k: self._by_kid[k] for k in want}

    def kid_of(self, subject: str) -> str | None:
        """The key id a subject's records carry, or None (no record was ever sealed for
        them, or they were erased)."""
        db = self._conn()
        row = db.execute("SELECT kid FROM keys WHERE ix = ?", (self.index(subject),)).fetchone()
        return None if row is None else str(row[0])

    def erase(self, subject: str) -> str | None:
        """Delete the subject's key (zeroed in the file); returns its key id, None when
        there was none. Other processes drop their cached keys (the generation stamp)."""
        with self._lock:
            db = self._conn()
            ix = self.index(subject)
            try:
                row = db.execute("SELECT kid FROM keys WHERE ix = ?", (ix,)).fetchone()
                if row is None:
                    return None
                with db:
                    db.execute("DELETE FROM keys WHERE ix = ?", (ix,))
                db.execute("VACUUM")  # no free page keeps the key's bytes either
            except sqlite3.Error as exc:
                raise self._fail("written", exc) from exc
            atomic_write_bytes(self.root / "generation", f"{time.time_ns()}\n".encode())
            self._by_ix.pop(ix, None)
            self._by_kid.pop(str(row[0]), None)
            self._ix.pop(subject, None)
            return str(row[0])

    def count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM keys").fetchone()[0])


_OPEN: dict[Path, KeyStore] = {}
_OPEN_LOCK = threading.Lock()


def shared(root: Path, *, create: bool = True) -> KeyStore:
    """One store per folder per process (its cache is shared by the process's readers)."""
    key = root.resolve()
    with _OPEN_LOCK:
        ks = _OPEN.get(key)
        if ks is None:
            ks = _OPEN[key] = KeyStore(key, create=create)
        return ks


def for_audit(audit_root: Path) -> KeyStore:
    """The key store of the workspace an audit folder (``<workspace>/audit/<app>``) is in,
    for reading (never created by a reader): the nearest folder above it that holds one."""
    env = os.environ.get("INSIGHT_KEY_STORE")
    if env:
        return shared(Path(env), create=False)
    root = audit_root.resolve()
    for up in root.parents:
        if (up / "keys" / STORE).is_file():
            return shared(up / "keys", create=False)
    return shared(store_root(root.parent.parent), create=False)
