"""The gate's outbox as the uploader reads and marks it, on the sync thread's own ledger connection.

:meth:`citypass.gate.ledger.GateLedger.pending` always starts from the oldest unacknowledged row; the uploader
keeps a window of batches in flight, so it reads *after* the last row it sent (:func:`pending_after`,
on the partial index of unacknowledged rows). :func:`mark_uploaded` is ``outbox.mark_uploaded`` in one
statement, for the reason its docstring gives.
"""

from __future__ import annotations

import json
import sqlite3

from citypass.gate.ledger import GateLedger
from citypass.gate.ledger.connection import translate
from citypass.gate.ledger.outbox import OutboxRow

_PENDING_AFTER = ("SELECT seq, event_id, tap_id, kind, body, created_at FROM outbox"
                  " WHERE uploaded_at IS NULL AND seq > ? ORDER BY seq LIMIT ?")


def pending_after(ledger: GateLedger, seq: int, limit: int) -> list[OutboxRow]:
    """Up to ``limit`` unacknowledged rows after outbox sequence ``seq``, oldest first."""
    try:
        return [OutboxRow(*row) for row in ledger.db.conn.execute(_PENDING_AFTER, (seq, limit)).fetchall()]
    except sqlite3.Error as exc:
        raise translate(exc) from exc


def mark_uploaded(ledger: GateLedger, ids: list[str], at: int) -> int:
    """``outbox.mark_uploaded`` as ONE statement: sqlite3 releases the GIL for the whole statement, so the
    write lock is held for microseconds per row even while other threads keep the interpreter busy
    (``executemany`` takes the GIL back between rows and can hold the lock for a GIL wait each time)."""
    conn = ledger.db.conn
    try:
        conn.execute("PRAGMA synchronous=NORMAL")  # an ack mark may be lost in a power cut: it is resent
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute("UPDATE outbox SET uploaded_at = ? WHERE uploaded_at IS NULL AND event_id IN"
                               " (SELECT value FROM json_each(?))", (at, json.dumps(ids)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise translate(exc) from exc
    finally:
        conn.execute(f"PRAGMA synchronous={ledger.config.synchronous}")
    return cur.rowcount
