"""Connections and write transactions for the issuer's SQLite file.

The HTTP API runs request handlers on a pool of worker threads, and a SQLite connection must not
carry two threads' transactions at once, so each thread gets its own connection: opened on first use,
closed when its thread ends (the pool retires idle threads, so connections must not pile up), and all
closed by :meth:`SqliteBase.close`. Connections use ``isolation_level=None``: there are no
implicit transactions, every multi-statement write is an explicit :meth:`SqliteBase.write` block
(``BEGIN IMMEDIATE`` … ``COMMIT``), and sqlite-utils nests its own work inside it as savepoints.

Why IMMEDIATE: it takes the database's write lock *before* the first read of the transaction, so a
check-then-write (are there places left in this slot? book them) cannot interleave with another
writer's — in this process or any other (the CLI, a second server). That is the whole of the
no-overbooking guarantee on SQLite; a PostgreSQL backend would use ``SELECT … FOR UPDATE``.

A full disk (or the store's own quota, :attr:`SqliteBase.max_bytes`) makes a write fail with
:class:`StorageFull`, an :class:`~citypass.errors.Unavailable`: the transaction is rolled back, nothing was
acknowledged, and the API answers 507 with ``Retry-After`` — a gate keeps its outbox and sends it again.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import sqlite_utils

from citypass.credential.filemodes import private_file
from citypass.issuer.records import StorageFull

#: How long a writer waits for the lock before giving up (ms). Transactions here are short.
BUSY_TIMEOUT_MS = 10_000


def _is_full(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL:
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class _Connection:
    """One thread's connection; closed when the thread's locals are cleared at thread exit."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def close(self) -> None:
        with suppress(sqlite3.Error):
            self.db.conn.close()

    def __del__(self) -> None:
        with suppress(Exception):  # may run at interpreter shutdown
            self.close()


class SqliteBase:
    """Per-thread connections to one SQLite file, and explicit write transactions."""

    def __init__(self, path: Path, *, max_bytes: int | None = None) -> None:
        self.path = Path(path)
        #: A quota: a write that would grow the file past it fails as on a full disk (:class:`StorageFull`),
        #: keeping room on the disk for the WAL and the system. None: only the disk limits it.
        self.max_bytes = max_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._writer = threading.Lock()
        self._all: weakref.WeakSet[_Connection] = weakref.WeakSet()

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection, wrapped for sqlite-utils."""
        holder: _Connection | None = getattr(self._local, "holder", None)
        if holder is None:
            private_file(self.path)  # 0600 whatever the umask; SQLite gives -wal and -shm the same mode
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            conn.execute("PRAGMA synchronous=FULL")  # an acknowledged tap survives a power cut
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            holder = _Connection(sqlite_utils.Database(conn, execute_plugins=False))
            self._local.holder = holder
            with self._lock:
                self._all.add(holder)
        return holder.db

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` if the block raises).

        Nested calls join the transaction already open on this thread. Writers of this process queue
        on a lock first: SQLite's own busy handler waits by sleeping (up to 100 ms a step), which under
        a burst of concurrent requests turns into long tail latencies; a lock wakes the next writer as
        soon as the previous one commits. The busy timeout still covers other processes."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        with self._writer:
            self._apply_quota(conn)
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):  # the original error is the one worth reporting
                        conn.execute("ROLLBACK")
                if _is_full(exc):
                    raise StorageFull(f"the issuer's storage is full ({exc}): nothing was written; "
                                      "free disk space, then try again") from exc
                raise

    def _apply_quota(self, conn: sqlite3.Connection) -> None:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        # At least 1: 0 would leave the limit unchanged; below the current size SQLite keeps the current size.
        pages = max(1, self.max_bytes // page_size) if self.max_bytes is not None else 2**32 - 2
        conn.execute(f"PRAGMA max_page_count = {int(pages)}")

    def close(self) -> None:
        """Close every thread's connection (call once, when no request is running)."""
        with self._lock:
            holders = list(self._all)
            self._all = weakref.WeakSet()
        for holder in holders:
            holder.close()
        self._local = threading.local()
