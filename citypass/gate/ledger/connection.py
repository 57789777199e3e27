"""Opening the ledger's SQLite file, write transactions, and the errors the ledger raises.

Everything that touches the file goes through here, so that every SQLite failure reaches the daemon
as one of a few :class:`LedgerError` subclasses it can map to a policy:

==========================  =========================================================  =================
exception                   meaning                                                     daemon's response
==========================  =========================================================  =================
:class:`LedgerBusy`         another writer held the lock for over ``busy_timeout_ms``;  fallback policy,
                            nothing was written                                         retry later
:class:`LedgerStorageError` I/O error, full disk, corrupt or unreadable file            out of order
:class:`LedgerSchemaError`  not a ledger file, or one written by newer software         refuse to start
:class:`SnapshotRefused`    snapshot or delta with a bad signature or an old sequence   keep the old one
:class:`TapNotFound`        annulment or passage for a tap this ledger does not hold    log it
==========================  =========================================================  =================

Example::

    db = connect(Path("ledger.sqlite3"), synchronous="FULL", busy_timeout_ms=50)
    with write(db.conn):          # BEGIN IMMEDIATE … COMMIT, ROLLBACK on any exception
        db.execute("UPDATE meta SET value = 1 WHERE key = 'x'")
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import sqlite_utils

from citypass.credential.filemodes import private_file
from citypass.errors import CityPassError, InvalidInput, NotFound, Unavailable

# Extended result codes carry the primary code in their low byte (sqlite.org/rescode.html).
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_STORAGE_CODES = frozenset({
    sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PROTOCOL,
})


class LedgerError(CityPassError):
    """Base class of everything the ledger raises on purpose."""


class LedgerBusy(LedgerError, Unavailable):
    """The write lock was not obtained within ``busy_timeout_ms``. Nothing was written."""


class LedgerStorageError(LedgerError, Unavailable):
    """The file cannot be read or written (I/O error, full disk, corruption, permissions)."""


class LedgerSchemaError(LedgerError, Unavailable):
    """The file is not a City Pass ledger, or its schema is newer than this software knows."""


class SnapshotRefused(LedgerError, InvalidInput):
    """A snapshot or delta was not applied (bad signature, malformed, older than the ledger's)."""


class TapNotFound(LedgerError, NotFound):
    """No tap with this id is in the ledger (never recorded here, or pruned long after upload)."""


def translate(exc: sqlite3.Error) -> LedgerError:
    """The :class:`LedgerError` to raise for a SQLite exception (``raise translate(exc) from exc``)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if primary in _BUSY_CODES or "locked" in text:
        return LedgerBusy(f"ledger is locked by another writer: {text}")
    if primary in _STORAGE_CODES or type(exc) in (sqlite3.OperationalError, sqlite3.DatabaseError):
        return LedgerStorageError(f"ledger storage failed: {text}")
    return LedgerError(f"ledger error: {text}")  # IntegrityError, ProgrammingError: a bug, not the disk


def connect(path: Path, *, synchronous: str = "FULL", busy_timeout_ms: int = 50) -> sqlite_utils.Database:
    """Open (creating if needed) the ledger file in WAL mode and wrap it for sqlite-utils.

    ``isolation_level=None`` turns off the sqlite3 module's implicit BEGINs: every write in the ledger
    is inside an explicit :func:`write` block, so it is obvious where each transaction starts and ends
    (sqlite-utils nests its own work inside an open transaction as savepoints)."""
    if synchronous not in ("NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
    try:
        # 0600 whatever the umask: the taps say who went where; SQLite gives -wal and -shm the same mode.
        private_file(path)
    except OSError as exc:
        raise LedgerStorageError(f"cannot create {path}: {exc.strerror or exc}") from exc
    try:
        conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    try:
        # WAL: readers (the decision) never wait for the writer, and a commit appends instead of
        # rewriting pages in place, which is what makes a kill at any instant harmless.
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerStorageError(f"cannot switch {path} to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        # The busy handler also covers the WAL-index lock taken by reads during a checkpoint.
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # A snapshot install writes a WAL as large as the revocation table; cap what is kept after
        # the next checkpoint so the file does not stay hundreds of MB on a small flash device.
        conn.execute("PRAGMA journal_size_limit=67108864")
        return sqlite_utils.Database(conn, execute_plugins=False)
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc) from exc
    except LedgerError:
        conn.close()
        raise


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` if the block raises.

    IMMEDIATE takes the write lock at the start (waiting at most the busy timeout), so a transaction
    never fails half way through because another writer got in first, and a lock problem surfaces
    as :class:`LedgerBusy` before anything was done. When this block exits normally the commit has
    returned, which with ``synchronous=FULL`` means the WAL was fsynced."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            with suppress(sqlite3.Error):  # the original error is the one worth reporting
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise translate(exc) from exc
        raise

