"""The outbox: everything the gate must tell the issuer, in order, until the issuer acknowledges it.

Each row is one *event* about a tap: ``tap`` (the decision itself), ``annul`` (the barrier reported
that fewer persons passed than were granted), ``passage`` (a person's passage was confirmed) or
``stage`` (a late stage time such as the relay's). Every event has its own stable id, so the sync
module can resend after a lost acknowledgement and the issuer dedupes by id: exactly-once accounting
is "at least once" delivery plus idempotent ingestion. The ``body`` is the JSON text written when the
event was recorded, byte for byte, so a resend is identical to the first attempt.

Rows leave the outbox only after :func:`mark_uploaded` (called on the issuer's ack) *and* the
retention period; an unacknowledged row is never deleted, however old.

This module is the only place that holds the outbox's SQL; everything else — the gate's sync thread
(:mod:`citypass.sync.gate_sync`), the benchmarks, the tests — goes through
:class:`~citypass.gate.ledger.GateLedger`'s methods, so the method a test exercises is the one that ships.

Example (what the sync thread does; it keeps a window of batches in flight, so it reads *after* the last
row it sent)::

    rows = ledger.pending(500, after=cursor)    # oldest first
    publish(rows)                               # MQTT, QoS 1
    ledger.mark_uploaded(acked_event_ids)       # only ids the issuer confirmed
    ledger.backlog()                            # → rows still to send (health report)
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from citypass.errors import InvalidInput

EVENT_KINDS = ("tap", "annul", "passage", "stage")


@dataclass(frozen=True)
class OutboxRow:
    """One event to upload. ``seq`` orders events on this gate; ``event_id`` identifies it globally."""

    seq: int
    event_id: str
    tap_id: str
    kind: str
    body: str
    created_at: int

    def data(self) -> dict[str, Any]:
        """The body parsed (the event's fields plus ``event_id``, ``kind`` and ``tap_id``)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def new_id(unix_ms: int) -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Why not ``gate_id`` + a counter? A counter lives in the ledger file; a device whose file is lost
    or re-provisioned would count from 1 again, and the issuer, which dedupes by id, would silently
    drop real taps as duplicates. 74 random bits make a collision across a whole fleet's lifetime
    negligible without any coordination, and the time prefix keeps ids roughly time-ordered for the
    issuer's indexes. (Order *on this gate* is ``seq``, which does not depend on the clock.)

        >>> tap_id = new_id(1_800_000_000_000)
        >>> uuid.UUID(tap_id).version
        7
    """
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64  # version 7, 12 random bits
    value |= 0b10 << 62 | (rand & 0x3FFF_FFFF_FFFF_FFFF)  # RFC 9562 variant, 62 random bits
    return str(uuid.UUID(int=value))


def add_event(db: sqlite_utils.Database, kind: str, tap_id: str, fields: Mapping[str, Any], created_at: int,
              unix_ms: int) -> str:
    """Append an event inside the caller's transaction; return its id."""
    return add_events(db, [(kind, tap_id, fields, created_at, unix_ms)])[0]


def add_events(db: sqlite_utils.Database, events: Iterable[tuple[str, str, Mapping[str, Any], int, int]]) -> list[str]:
    """Append events ``(kind, tap_id, fields, created_at, unix_ms)`` inside the caller's transaction, in one
    statement; return their ids in order."""
    rows, ids = [], []
    for kind, tap_id, fields, created_at, unix_ms in events:
        if kind not in EVENT_KINDS:
            raise InvalidInput(f"unknown outbox event kind {kind!r}")
        event_id = new_id(unix_ms)
        body = json.dumps({"event_id": event_id, "kind": kind, "tap_id": tap_id, **fields},
                          separators=(",", ":"), sort_keys=True)
        rows.append((event_id, tap_id, kind, body, created_at))
        ids.append(event_id)
    db.conn.executemany("INSERT INTO outbox (event_id, tap_id, kind, body, created_at) VALUES (?, ?, ?, ?, ?)", rows)
    return ids


def pending(db: sqlite_utils.Database, limit: int, after: int = 0) -> list[OutboxRow]:
    """Up to ``limit`` unacknowledged events after outbox sequence ``after``, oldest first (served by the
    partial index of unacknowledged rows)."""
    rows = db.conn.execute(
        "SELECT seq, event_id, tap_id, kind, body, created_at FROM outbox WHERE uploaded_at IS NULL AND seq > ?"
        " ORDER BY seq LIMIT ?", (after, limit),
    ).fetchall()
    return [OutboxRow(*row) for row in rows]


def mark_uploaded(db: sqlite_utils.Database, event_ids: Iterable[str], at: int) -> int:
    """Mark events acknowledged at ``at`` inside the caller's transaction; return how many changed.
    Ids already marked, or unknown, are ignored (an ack can arrive twice).

    ONE statement, not ``executemany``: sqlite3 releases the GIL for the whole statement, so the write lock
    is held for microseconds per row even while other threads keep the interpreter busy (``executemany``
    takes the GIL back between rows, and can hold the lock for a GIL wait each time — the decision loop's
    writer, with its 50 ms busy budget, would feel that)."""
    cur = db.conn.execute("UPDATE outbox SET uploaded_at = ? WHERE uploaded_at IS NULL AND event_id IN"
                          " (SELECT value FROM json_each(?))", (at, json.dumps(list(event_ids))))
    return cur.rowcount


def backlog(db: sqlite_utils.Database) -> int:
    """How many events await acknowledgement."""
    return count_backlog(db.conn)


def count_backlog(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM outbox WHERE uploaded_at IS NULL").fetchone()[0])


def read_backlog(path: Path) -> int:
    """The backlog of the ledger file at ``path``, read through a read-only connection that takes no lock
    (:meth:`GateLedger.open` migrates, which writes: a monitor polling with it would compete with the gate
    for the write lock)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return count_backlog(conn)
    finally:
        conn.close()


def prune(db: sqlite_utils.Database, acked_before: int) -> int:
    """Delete events acknowledged before ``acked_before``, then taps (and their passages) that no
    longer have any outbox row and were recorded before it. Returns the events deleted."""
    conn = db.conn
    before = conn.total_changes
    conn.execute("DELETE FROM outbox WHERE uploaded_at IS NOT NULL AND uploaded_at < ?", (acked_before,))
    events = conn.total_changes - before
    conn.execute(
        "DELETE FROM taps WHERE at < ? AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.tap_id = taps.tap_id)",
        (acked_before,),
    )
    conn.execute("DELETE FROM passages WHERE tap_id NOT IN (SELECT tap_id FROM taps)")
    return events
