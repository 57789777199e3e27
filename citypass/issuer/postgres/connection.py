"""Pooled connections and write transactions for the issuer's PostgreSQL database.

One :class:`PgBase` holds a :class:`psycopg_pool.ConnectionPool`. A call that only reads borrows a connection
for one statement (autocommit: it sees everything committed before it). A multi-statement write is a
:meth:`PgBase.write` block: one connection, one transaction, committed when the block ends and rolled back
if it raises. Nested blocks on the same thread join the transaction already open (the repository methods
call each other: ``add_site`` logs a ledger change), and so do reads made inside it, so a check-then-write
sees its own writes.

Where SQLite takes the whole file's write lock (``BEGIN IMMEDIATE``), PostgreSQL locks rows: the guarantees
the repository promises are made with statements that lock exactly what they decide on —

* no overbooking: ``UPDATE slots SET booked = booked + n WHERE id = … AND booked + n <= capacity`` (the
  row lock makes concurrent bookings of one slot queue; each re-reads ``booked`` after the one before it
  committed);
* a strictly ordered ledger sequence: the counter row in ``meta`` is updated (so locked) first in the
  transaction that inserts the change, so writers queue on it and commit in sequence order — a reader never
  sees change *n + 1* without change *n*;
* taps stored once: ``INSERT … ON CONFLICT DO NOTHING RETURNING`` on the event id and the tap id, whatever
  worker or node inserts it at the same moment.

A transaction that fails on a serialization failure or a deadlock (rare: two batches annulling the same
taps in opposite orders) is rolled back whole and raised as :class:`~citypass.issuer.records.TransactionConflict`;
:meth:`PgBase.transact` and :func:`citypass.issuer.ingest.ingest` (a batch with its control-room upkeep) run it
again a bounded number of times before giving up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from citypass.issuer.records import StorageFull, TransactionConflict

#: Connections one store keeps open (a server's request threads and ingest workers share them).
POOL_MAX = 16
#: Attempts of a transaction that hit a deadlock or serialization failure.
RETRIES = 5


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.autocommit = True
    # No JIT compilation: the issuer's statements each touch a few hundred rows by index, but the planner's row
    # estimates for a lookup in a large or freshly filled table pass jit_above_cost, and compiling the plan then took
    # 30 ms of a 40 ms statement (measured on the journeys upkeep at ingest). Reports run on the same connections
    # and are index reads too.
    conn.execute("SET jit = off")


class PgBase:
    """A connection pool to one PostgreSQL database, and explicit write transactions."""

    def __init__(self, url: str, *, pool_min: int = 1, pool_max: int = POOL_MAX) -> None:
        self.url = url
        # No server-side prepared statements: a plan cached while a table was small (a seq scan) would stay in
        # use as it grows to millions of rows; a fresh plan per statement costs a fraction of a millisecond.
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=pool_min, max_size=pool_max, configure=_configure, open=True, timeout=30.0,
            name="citypass-issuer", kwargs={"prepare_threshold": None})
        self._local = threading.local()

    # -- reads ------------------------------------------------------------------------------------------
    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's open transaction's connection, or a pooled one (autocommit) for the block."""
        current: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self.pool.connection() as conn:
            yield conn

    def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        with self.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> tuple[Any, ...] | None:
        with self.connection() as conn:
            return conn.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = self.fetchone(sql, params)
        return None if row is None else row[0]

    # -- writes -----------------------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction (``BEGIN`` … ``COMMIT``; ``ROLLBACK`` if the block raises). Nested calls join it.

        A block is not retried here (it may have side effects in Python); :meth:`transact` retries a function, and
        ingest its whole batch. A deadlock or serialization failure leaves the outermost block as
        :class:`~citypass.issuer.records.TransactionConflict` (rolled back: nothing written)."""
        current: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self.pool.connection() as conn:
            self._local.conn = conn
            try:
                with conn.transaction():
                    yield conn
            except pg_errors.DiskFull as exc:
                raise StorageFull(f"the issuer's database is full ({exc}): nothing was written; free space on "
                                  "the database server, then try again") from exc
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                raise TransactionConflict(f"the transaction was rolled back to break a conflict ({exc}); nothing "
                                          "was written") from exc
            finally:
                self._local.conn = None

    def transact(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(conn, *args)`` in one transaction, retried on a deadlock or serialization failure."""
        for attempt in range(RETRIES):
            try:
                with self.write() as conn:
                    return fn(conn, *args)
            except TransactionConflict:  # only the outermost block raises it: a nested one is retried with it
                if attempt == RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the pool (call once, when no request is running)."""
        self.pool.close()
