"""Installing what the issuer signs: full snapshots, revocation deltas, and the state they leave.

The chain of trust is the one in :mod:`citypass.credential.snapshot`: the gate's *pinned* root key → the
root-signed trust list → a ``ledger`` key → the snapshot. Verification happens before anything is written,
so a snapshot with a bad signature never reaches the file.

A verified snapshot is built *beside* the live tables and swapped in (:func:`install_paced`), because a
running gate records a tap in a write transaction before its barrier moves, and ten million revocations in
one transaction held the write lock for seconds (every decision meanwhile got ``LedgerBusy``). So: the ids go
into fresh staging tables in batches, each its own short transaction with a pause after it in which a waiting
tap gets the lock — :data:`BATCH` rows at first, then as many as fit in about :data:`BATCH_TARGET_S` of lock
time on this machine (:class:`Pace`); one short durable transaction then renames the staging tables into
place together with the trust list, sites and meta; the old tables are emptied afterwards in batches the same
way. A kill at any instant leaves the previous snapshot in force (the swap is one transaction) and at most
orphaned staging or old tables, which the next install removes.

Freshness is ordered by ``(seq, issued_at)``: the issuer bumps ``seq`` on every change, and re-exports
an unchanged ledger with the same ``seq`` and a later ``issued_at`` — which is how a gate learns that
nothing changed *as of then*, so it still advances ``synced_at``. Anything older is refused unless
forced (a technician restoring a known snapshot).

The meta table holds integers only::

    snapshot_seq   sequence of the installed snapshot or last delta
    synced_at      issued_at of the freshest signed data installed (the ledger's age is now - this)
    clock_floor    never decreases: max of every issued_at and every recorded tap's effective time
    revocations, revoked_holders   row counts (kept here: count(*) over 10M rows takes ~0.3 s)
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from sqlite_utils import Database

from citypass.credential.keys import VerifyKey
from citypass.credential.sites import SiteSettings
from citypass.credential.snapshot import LedgerSnapshot, SnapshotError, load_snapshot
from citypass.credential.trustlist import TrustError, TrustList
from citypass.gate.ledger.connection import LedgerBusy, SnapshotRefused
from citypass.gate.ledger.revocations import (
    ID_TABLES,
    delete_ids,
    group_by_width,
    insert_blob,
    insert_ids,
    replace_ids,
    sorted_blob,
)

__all__ = ["LedgerState", "apply_delta", "install", "install_paced", "pinned_root", "raise_floor", "read_state",
           "replace_sites", "upsert_sites", "verify"]

#: Rows in the first staging (or clean-up) transaction; later ones are sized by :class:`Pace`.
BATCH = 1024
#: How long one batch may hold the write lock: a tap that finds it taken waits about this long. The batch
#: size follows the time its predecessor took, so a slow flash card or a busy CPU gets smaller batches.
BATCH_TARGET_S = 0.008
BATCH_MIN, BATCH_MAX = 1024, 65536
#: Pause after each batch: a tap waiting in SQLite's busy handler (it polls 1, 3, 8, 18 ms after it starts
#: waiting) finds the lock free within it.
PAUSE_S = 0.010

#: ``transaction(durable)``: a write transaction on the ledger's connection (``GateLedger._write``).
Transaction = Callable[[bool], AbstractContextManager[sqlite3.Connection]]
#: How long one batch of the paced install keeps trying for the write lock while the decision loop writes.
BUSY_PATIENCE_S = 30.0
T = TypeVar("T")

#: What a gate trusts before its first snapshot: nothing (every code is denied ``unknown_key``).
EMPTY_TRUST = TrustList(version=0, issued_at=0, keys=())


@dataclass(frozen=True)
class LedgerState:
    """The slowly changing part of the ledger, cached in memory between commits."""

    trust: TrustList
    trust_error: str | None
    trust_signed: bytes | None
    seq: int | None
    synced_at: int | None
    clock_floor: int


def get_meta(conn: sqlite3.Connection, key: str) -> int | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: int) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def raise_floor(conn: sqlite3.Connection, at: int) -> None:
    """Raise ``clock_floor`` to ``at`` if that is later; never lowers it."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('clock_floor', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)", (at,),
    )


def read_state(db: Database, root: VerifyKey | None, previous: LedgerState | None) -> LedgerState:
    """Read meta and the trust list. The trust list is re-verified (against the pinned ``root``, or
    else the root it was installed with) only when its bytes changed since ``previous``."""
    conn = db.conn
    meta = {str(k): int(v) for k, v in conn.execute("SELECT key, value FROM meta").fetchall()}
    row = conn.execute("SELECT signed, root_alg, root_pub FROM trust WHERE id = 1").fetchone()
    trust, error, signed = EMPTY_TRUST, None, None
    if row is not None:
        signed = bytes(row[0])
        if previous is not None and previous.trust_signed == signed:
            trust, error = previous.trust, previous.trust_error
        else:
            try:
                key = root if root is not None else VerifyKey.from_raw(row[1], bytes(row[2]))
                trust = TrustList.verify(signed, key)
            except (TrustError, ValueError) as exc:
                error = f"stored trust list rejected, trusting no keys: {exc}"
    return LedgerState(trust, error, signed, meta.get("snapshot_seq"), meta.get("synced_at"),
                       meta.get("clock_floor", 0))


def pinned_root(own: VerifyKey | None, given: VerifyKey | None) -> VerifyKey:
    """The root key to verify with: the ledger's pinned one, or the one passed (they must agree).
    A snapshot's embedded copy of the root is never used."""
    if own is not None and given is not None and (own.alg, own.raw) != (given.alg, given.raw):
        raise SnapshotRefused("the root key passed is not the one this ledger was opened with")
    key = given or own
    if key is None:
        raise ValueError("load_snapshot needs the pinned root key (GateLedger.open(root=…) or root=…)")
    return key


def verify(data: bytes, root: VerifyKey) -> LedgerSnapshot:
    try:
        return load_snapshot(data, root)
    except SnapshotError as exc:
        raise SnapshotRefused(f"snapshot refused: {exc}") from exc


def install(db: Database, snap: LedgerSnapshot, *, force: bool = False) -> None:
    """Replace trust list, sites and revocations with a verified snapshot's (inside a transaction)."""
    conn = db.conn
    seq, synced = get_meta(conn, "snapshot_seq"), get_meta(conn, "synced_at")
    if not force and seq is not None and (snap.seq, snap.issued_at) < (seq, synced or 0):
        raise SnapshotRefused(
            f"snapshot seq {snap.seq} issued at {snap.issued_at} is older than the installed seq {seq} "
            f"(synced at {synced}); pass force=True to install it anyway"
        )
    db.table("trust").upsert(
        {"id": 1, "version": snap.trust.version, "issued_at": snap.trust.issued_at,
         "signed": snap.trust_signed, "root_alg": int(snap.root.alg), "root_pub": snap.root.raw},
        pk="id",
    )
    replace_sites(db, snap.sites)
    set_meta(conn, "revocations", replace_ids(conn, "revocations", snap.revoked))
    set_meta(conn, "revoked_holders", replace_ids(conn, "revoked_holders", snap.revoked_holders))
    set_meta(conn, "snapshot_seq", snap.seq)
    set_meta(conn, "synced_at", snap.issued_at)
    raise_floor(conn, snap.issued_at)


def install_paced(db: Database, snap: LedgerSnapshot, transaction: Transaction, *, force: bool = False,
                  batch: int = BATCH, pause_s: float = PAUSE_S, sleep: Callable[[float], None] = time.sleep) -> None:
    """Install a verified snapshot beside the live tables and swap it in (see the module docstring). No
    transaction holds the write lock for more than one batch of ``batch`` rows."""
    conn = db.conn
    _check_fresh(conn, snap, force)
    _drop_leftovers(conn, transaction, batch, pause_s, sleep)
    tag = os.urandom(4).hex()  # two installs at once (sync thread and a technician) never share a staging table
    staged: dict[str, int] = {}
    for table, ids in (("revocations", snap.revoked), ("revoked_holders", snap.revoked_holders)):
        staging = f"{table}_next_{tag}"
        _in_turn(transaction, False, _create_like(table, staging), sleep)
        staged[table] = _stage(conn, transaction, staging, ids, batch, pause_s, sleep)

    def swap_in(swap: sqlite3.Connection) -> None:  # the one durable step: fsyncs everything staged before it
        _check_fresh(swap, snap, force)
        db.table("trust").upsert(
            {"id": 1, "version": snap.trust.version, "issued_at": snap.trust.issued_at,
             "signed": snap.trust_signed, "root_alg": int(snap.root.alg), "root_pub": snap.root.raw},
            pk="id",
        )
        replace_sites(db, snap.sites)
        for table, count in staged.items():
            swap.execute(f"ALTER TABLE {table} RENAME TO {table}_old_{tag}")
            swap.execute(f"ALTER TABLE {table}_next_{tag} RENAME TO {table}")
            set_meta(swap, table, count)
        set_meta(swap, "snapshot_seq", snap.seq)
        set_meta(swap, "synced_at", snap.issued_at)
        raise_floor(swap, snap.issued_at)

    _in_turn(transaction, True, swap_in, sleep)
    for table in staged:
        _purge(conn, transaction, f"{table}_old_{tag}", batch, pause_s, sleep)


def _check_fresh(conn: sqlite3.Connection, snap: LedgerSnapshot, force: bool) -> None:
    seq, synced = get_meta(conn, "snapshot_seq"), get_meta(conn, "synced_at")
    if not force and seq is not None and (snap.seq, snap.issued_at) < (seq, synced or 0):
        raise SnapshotRefused(
            f"snapshot seq {snap.seq} issued at {snap.issued_at} is older than the installed seq {seq} "
            f"(synced at {synced}); pass force=True to install it anyway"
        )


def _ddl(conn: sqlite3.Connection, table: str, name: str) -> str:
    """``CREATE TABLE name …`` exactly as ``table`` was made (WITHOUT ROWID, its key)."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    sql = str(row[0])
    return f"CREATE TABLE {name}{sql[sql.index('('):]}"


@dataclass
class Pace:
    """Rows per batch, steered so that one batch holds the write lock for about ``target_s``: halved after a
    batch that took longer than the target, doubled after one that took under a third of it, within
    ``[BATCH_MIN, BATCH_MAX]``.

    >>> pace = Pace(rows=8192, target_s=0.008)
    >>> pace.took(0.040, 8192); pace.rows
    4096
    >>> pace.took(0.001, 4096); pace.rows
    8192
    """

    rows: int = BATCH
    target_s: float = BATCH_TARGET_S

    def took(self, seconds: float, rows: int) -> None:
        if seconds > self.target_s:
            self.rows = max(BATCH_MIN, min(self.rows, rows) // 2)
        elif seconds < self.target_s / 3 and rows >= self.rows:
            self.rows = min(BATCH_MAX, self.rows * 2)

    def timed(self, rows: int, work: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return work()
        finally:
            self.took(time.perf_counter() - started, rows)


def _stage(conn: sqlite3.Connection, transaction: Transaction, table: str, ids: Iterable[bytes], batch: int,
           pause_s: float, sleep: Callable[[float], None]) -> int:
    """Insert ``ids`` into ``table`` in key order, one short transaction per batch (``batch`` rows at first,
    then as :class:`Pace` steers); how many rows."""
    added, first, pace = 0, True, Pace(rows=batch)
    for width, group in group_by_width(ids).items():
        blob = sorted_blob(group, width)  # sorted once (numpy for 8-byte ids), then cut into batches
        offset = 0
        while offset < len(blob):
            if not first:
                _yield(conn, pause_s, sleep)
            first = False
            rows = pace.rows
            chunk = blob[offset:offset + rows * width]
            added += pace.timed(rows, partial(_in_turn, transaction, False, _insert(table, chunk, width), sleep))
            offset += rows * width
    return added


def _create_like(table: str, name: str) -> Callable[[sqlite3.Connection], None]:
    def create(conn: sqlite3.Connection) -> None:
        conn.execute(_ddl(conn, table, name))
    return create


def _insert(table: str, chunk: bytes, width: int) -> Callable[[sqlite3.Connection], int]:
    return lambda conn: insert_blob(conn, table, chunk, width)


def _in_turn(transaction: Transaction, durable: bool, work: Callable[[sqlite3.Connection], T],
             sleep: Callable[[float], None], patience_s: float = BUSY_PATIENCE_S) -> T:
    """Run ``work`` in one write transaction, waiting its turn: a busy gate records taps back to back, and a
    batch that did not get the lock within its busy timeout (``LedgerBusy``: nothing was written, the
    transaction rolled back) tries again after a short, growing pause rather than failing the install — the
    install yields to the decisions, never the other way round."""
    deadline, pause = time.monotonic() + patience_s, 0.005
    while True:
        try:
            with transaction(durable) as conn:
                return work(conn)
        except LedgerBusy:
            if time.monotonic() >= deadline:
                raise
            sleep(pause)
            pause = min(pause * 2, 0.2)


def _purge(conn: sqlite3.Connection, transaction: Transaction, table: str, batch: int, pause_s: float,
           sleep: Callable[[float], None]) -> None:
    """Empty ``table`` (keyed by ``id``) in key-range batches, one short transaction each (sized by
    :class:`Pace`), then drop it: dropping ten million rows at once frees every page in one transaction
    (~0.4 s per 5M rows)."""
    pace = Pace(rows=batch)

    def one_batch(c: sqlite3.Connection, rows: int) -> bool:
        row = c.execute(f"SELECT id FROM {table} ORDER BY id LIMIT 1 OFFSET ?", (rows - 1,)).fetchone()
        if row is None:
            c.execute(f"DROP TABLE {table}")
            return False
        c.execute(f"DELETE FROM {table} WHERE id <= ?", (row[0],))
        return True

    while True:
        rows = pace.rows
        if not pace.timed(rows, partial(_in_turn, transaction, False, partial(one_batch, rows=rows), sleep)):
            return
        _yield(conn, pause_s, sleep)


def _yield(conn: sqlite3.Connection, pause_s: float, sleep: Callable[[float], None]) -> None:
    """Between two batches: fold the WAL into the database here, outside any transaction — else the next tap's
    commit would pass the auto-checkpoint threshold and copy the staged pages itself, in the decision path —
    then leave the lock free for ``pause_s``."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    sleep(pause_s)


def _drop_leftovers(conn: sqlite3.Connection, transaction: Transaction, batch: int, pause_s: float,
                    sleep: Callable[[float], None]) -> None:
    """Remove staging and old tables an install killed half way left behind."""
    patterns = [f"{t}_next_%" for t in ID_TABLES] + [f"{t}_old_%" for t in ID_TABLES]
    names = [str(r[0]) for p in patterns
             for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?", (p,))]
    for name in names:
        if name.replace("_", "").isalnum():  # only our own names are interpolated into SQL
            _purge(conn, transaction, name, batch, pause_s, sleep)


def replace_sites(db: Database, sites: Iterable[SiteSettings]) -> None:
    """Replace the whole site list (inside the caller's transaction)."""
    db.conn.execute("DELETE FROM sites")
    db.table("sites").insert_all(
        ({"number": s.number, "name": s.name, "settings": s.model_dump_json()} for s in sites),
        pk="number",
    )


def upsert_sites(db: Database, sites: Iterable[SiteSettings]) -> int:
    """Add or replace the given sites by number, keeping every other one (inside the caller's transaction)."""
    rows = [(s.number, s.name, s.model_dump_json()) for s in sites]
    db.conn.executemany("INSERT INTO sites (number, name, settings) VALUES (?, ?, ?) ON CONFLICT (number) DO UPDATE "
                        "SET name = excluded.name, settings = excluded.settings", rows)
    return len(rows)


def apply_delta(db: Database, base_seq: int, seq: int, issued_at: int, revoked: Iterable[bytes],
                unrevoked: Iterable[bytes], revoked_holders: Iterable[bytes],
                unrevoked_holders: Iterable[bytes], sites: Iterable[SiteSettings] | None = None,
                site_updates: Iterable[SiteSettings] = ()) -> int:
    """Apply a verified delta from ``base_seq`` to ``seq`` (inside a transaction); return rows changed.

    A delta only applies on top of exactly the state it was computed from: a gate that missed one
    must fetch a snapshot instead of silently skipping a revocation. ``site_updates`` are upserted by
    number; ``sites`` (an older issuer's complete list) replaces the table."""
    conn = db.conn
    current = get_meta(conn, "snapshot_seq")
    if current != base_seq or seq <= base_seq:
        raise SnapshotRefused(
            f"delta {base_seq}→{seq} does not apply to a ledger at seq {current}: fetch a snapshot"
        )
    changes = 0
    for table, added, removed in (("revocations", revoked, unrevoked),
                                  ("revoked_holders", revoked_holders, unrevoked_holders)):
        plus, minus = insert_ids(conn, table, added), delete_ids(conn, table, removed)
        set_meta(conn, table, (get_meta(conn, table) or 0) + plus - minus)
        changes += plus + minus
    if sites is not None:
        site_list = list(sites)
        replace_sites(db, site_list)
        changes += len(site_list)
    changes += upsert_sites(db, site_updates)
    set_meta(conn, "snapshot_seq", seq)
    set_meta(conn, "synced_at", max(issued_at, get_meta(conn, "synced_at") or 0))
    raise_floor(conn, issued_at)
    return changes
