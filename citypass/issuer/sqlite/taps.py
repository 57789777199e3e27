"""SQLite tables for ingested taps: every event by event id, every tap once by tap id.

:meth:`TapTables.store_batch` is set-based (a few statements per batch of 500, not per event), which
is what makes ingest fast on one core, and it runs in one ``BEGIN IMMEDIATE`` transaction: when it
returns, every acknowledged event is on disk.

Ids belong to the device that used them first. An event id another device already used is not a repeat: the
event goes to ``tap_collisions`` (quarantined, reported, acknowledged — never silently taken for a duplicate);
an event about a tap id another device's tap holds is quarantined in ``tap_events``; an annulment only ever
applies to a tap of the device that uploaded it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from citypass.issuer.ingest import PreparedBatch, PreparedEvent
from citypass.issuer.records import IngestResult, Quarantined, QuarantineRecord
from citypass.issuer.sqlite.connection import SqliteBase
from citypass.issuer.tap_records import TapRecord

_CHUNK = 500  # bound variables per IN (…) list, well under SQLite's limit
_TAP_COLUMNS = ("tap_id, gate_id, site, direction, decision, reason, flags, credential_id, product, persons, kind,"
                " presentation_id, at, annulled, received_at")


class TapTables(SqliteBase):
    def store_batches(self, uploads: Sequence[tuple[PreparedBatch, str | None]],
                      received_at: int) -> list[IngestResult]:
        """Several devices' batches in one transaction, each as :meth:`store_batch` stores it (one writer at a time
        on SQLite: there is no statement to save, only the commit)."""
        with self.write():
            return [self.store_batch(batch, device_id, received_at) for batch, device_id in uploads]

    def store_batch(self, batch: PreparedBatch, device_id: str | None, received_at: int) -> IngestResult:
        events = batch.events
        if not events:
            return IngestResult((), 0, 0)
        with self.write() as conn:
            owners: dict[str, str | None] = {}  # event id seen before → the device that uploaded it
            for chunk in _chunks(batch.event_ids):
                marks = ",".join("?" * len(chunk))
                owners.update((r[0], r[1]) for r in conn.execute(
                    f"SELECT event_id, device_id FROM tap_events WHERE event_id IN ({marks})", chunk))
            clashes = [p for p in events
                       if p.event.event_id in owners and _foreign(owners[p.event.event_id], device_id)]
            recorded = self._record_collisions(clashes, owners, device_id, received_at)
            existing = set(owners) - {p.event.event_id for p in clashes}
            new = self._claim_tap_ids([p for p in events if p.event.event_id not in owners], device_id)
            conn.executemany(
                "INSERT INTO tap_events (event_id, tap_id, kind, body, created_at, received_at, device_id, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(p.event.event_id, p.event.tap_id, p.event.kind, p.stored_body(), p.event.created_at, received_at,
                  device_id, p.error) for p in new],
            )
            before = conn.total_changes
            conn.executemany(
                f"INSERT OR IGNORE INTO taps ({_TAP_COLUMNS}, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " 0, ?, ?)",
                [(t.tap_id, t.gate_id, t.site, t.direction, t.decision, t.reason, json.dumps(list(t.flags)),
                  t.credential_id, t.product, t.persons, t.kind, t.presentation_id, t.at, received_at, p.event.event_id)
                 for p in new if p.error is None and (t := p.tap) is not None],
            )
            new_taps = conn.total_changes - before
            # An annulment may arrive before its tap (another batch, out of order) or after it: apply
            # whatever annulments are stored for every tap this batch touched, whichever came first.
            touched = sorted({p.event.tap_id for p in new if p.error is None and p.event.kind in ("tap", "annul")})
            self._apply_annulments(touched)
        quarantined = tuple(Quarantined(p.event.event_id, p.error) for p in new if p.error is not None)
        return IngestResult(tuple(batch.event_ids), len(existing) + len(clashes) - len(recorded), new_taps,
                            quarantined + recorded)

    def _record_collisions(self, clashes: list[PreparedEvent], owners: dict[str, str | None], device_id: str | None,
                           received_at: int) -> tuple[Quarantined, ...]:
        """Keep events whose id another device used first; the ones recorded now (a resend is a duplicate)."""
        out = []
        for p in clashes:
            error = f"event id {p.event.event_id!r} was used first by device {owners[p.event.event_id]!r}"
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO tap_collisions (event_id, device_id, tap_id, kind, body, received_at, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [p.event.event_id, device_id, p.event.tap_id, p.event.kind, p.stored_body(), received_at, error])
            if cur.rowcount:
                out.append(Quarantined(p.event.event_id, error))
        return tuple(out)

    def _claim_tap_ids(self, events: list[PreparedEvent], device_id: str | None) -> list[PreparedEvent]:
        """Quarantine events about a tap id that another device's tap holds (in the store, or earlier in the
        batch); the others unchanged."""
        if device_id is None:
            return events
        holders: dict[str, str] = {}
        for chunk in _chunks(sorted({p.event.tap_id for p in events})):
            marks = ",".join("?" * len(chunk))
            holders.update((r[0], r[1]) for r in self.conn.execute(
                f"SELECT tap_id, gate_id FROM taps WHERE tap_id IN ({marks})", chunk))
        out = []
        for p in events:
            holder = holders.get(p.event.tap_id)
            if p.error is None and holder is not None and holder != device_id:
                p = replace(p, tap=None, error=f"{p.event.kind}: tap id {p.event.tap_id!r} belongs to device "
                                               f"{holder!r}, not the uploading device")
            elif p.error is None and p.tap is not None:
                holders.setdefault(p.event.tap_id, device_id)
            out.append(p)
        return out

    def _apply_annulments(self, tap_ids: list[str]) -> None:
        conn = self.conn
        best: dict[str, int] = {}
        for chunk in _chunks(tap_ids):
            marks = ",".join("?" * len(chunk))
            # Only the tap's own gate can annul it (an annulment uploaded by an admin names no device).
            for tap_id, body in conn.execute(
                "SELECT e.tap_id, e.body FROM tap_events e JOIN taps t ON t.tap_id = e.tap_id"
                " WHERE e.kind = 'annul' AND e.error IS NULL AND (e.device_id IS NULL OR e.device_id = t.gate_id)"
                f" AND e.tap_id IN ({marks})", chunk,
            ):
                persons = json.loads(body).get("persons_unused", 0)
                best[tap_id] = max(best.get(tap_id, 0), int(persons))
        # A gate annuls a tap at most once; if two reports differ, the larger wins whatever the order.
        conn.executemany(
            "UPDATE taps SET annulled = ?1 WHERE tap_id = ?2 AND decision = 'allow' AND annulled < ?1"
            " AND persons >= ?1", [(persons, tap_id) for tap_id, persons in best.items()],
        )

    def taps(self, *, site: int | None = None, since: int | None = None, until: int | None = None,
             credential_id: str | None = None, limit: int = 200_000) -> list[TapRecord]:
        where, params = ["1 = 1"], []
        for clause, value in (("site = ?", site), ("at >= ?", since), ("at < ?", until),
                              ("credential_id = ?", credential_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self.conn.execute(
            f"SELECT {_TAP_COLUMNS} FROM taps WHERE {' AND '.join(where)} ORDER BY at, tap_id LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [_record(row) for row in rows]

    def tap_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM taps").fetchone()[0])

    def quarantined(self, *, since: int | None = None, until: int | None = None,
                    limit: int = 100_000) -> list[QuarantineRecord]:
        rows = self.conn.execute(
            "SELECT event_id, tap_id, kind, device_id, received_at, error, 0 FROM tap_events"
            " INDEXED BY idx_tap_events_quarantined WHERE error IS NOT NULL AND received_at >= ?1 AND received_at < ?2"
            " UNION ALL SELECT event_id, tap_id, kind, device_id, received_at, error, 1 FROM tap_collisions"
            " WHERE received_at >= ?1 AND received_at < ?2 ORDER BY 5, 1 LIMIT ?3",
            [since if since is not None else -(2**62), until if until is not None else 2**62, limit],
        ).fetchall()
        return [QuarantineRecord(e, t, k, d, r, err, bool(c)) for e, t, k, d, r, err, c in rows]


def _foreign(owner: str | None, device_id: str | None) -> bool:
    """Whether an event id stored for ``owner`` is another device's than the uploader's."""
    return owner is not None and device_id is not None and owner != device_id


def _record(row: Any) -> TapRecord:
    """A stored tap's row (the columns of ``_TAP_COLUMNS``) as its record (validated when it was stored)."""
    (tap_id, gate_id, site, direction, decision, reason, flags, cred, product, persons, kind, pid, at, annulled,
     received_at) = row
    return TapRecord.stored(tap_id, gate_id, site, direction, decision, reason,
                            () if not flags or flags == "[]" else tuple(json.loads(flags)), cred, product, persons,
                            kind, pid, at, annulled, received_at)


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
