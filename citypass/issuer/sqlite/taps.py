"""SQLite tables for ingested taps: every event by event id, every tap once by tap id.

:meth:`TapTables.store_batch` is set-based (a few statements per batch of 500, not per event), which
is what makes ingest fast on one core, and it runs in one ``BEGIN IMMEDIATE`` transaction: when it
returns, every acknowledged event is on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from citypass.issuer.ingest import PreparedBatch
from citypass.issuer.records import IngestResult, Quarantined
from citypass.issuer.sqlite.connection import SqliteBase
from citypass.issuer.tap_records import TapRecord

_CHUNK = 500  # bound variables per IN (…) list, well under SQLite's limit
_TAP_COLUMNS = ("tap_id, gate_id, site, direction, decision, reason, flags, credential_id, product, persons, kind,"
                " presentation_id, at, annulled, received_at")


class TapTables(SqliteBase):
    def store_batch(self, batch: PreparedBatch, device_id: str | None, received_at: int) -> IngestResult:
        events = batch.events
        if not events:
            return IngestResult((), 0, 0)
        with self.write() as conn:
            existing: set[str] = set()
            for chunk in _chunks(batch.event_ids):
                marks = ",".join("?" * len(chunk))
                existing.update(r[0] for r in conn.execute(
                    f"SELECT event_id FROM tap_events WHERE event_id IN ({marks})", chunk))
            new = [p for p in events if p.event.event_id not in existing]
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
        return IngestResult(tuple(batch.event_ids), len(existing), new_taps, quarantined)

    def _apply_annulments(self, tap_ids: list[str]) -> None:
        conn = self.conn
        best: dict[str, int] = {}
        for chunk in _chunks(tap_ids):
            marks = ",".join("?" * len(chunk))
            for tap_id, body in conn.execute(
                f"SELECT tap_id, body FROM tap_events WHERE kind = 'annul' AND error IS NULL AND tap_id IN ({marks})",
                chunk,
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


def _record(row: Any) -> TapRecord:
    (tap_id, gate_id, site, direction, decision, reason, flags, cred, product, persons, kind, pid, at, annulled,
     received_at) = row
    return TapRecord(tap_id=tap_id, gate_id=gate_id, site=site, direction=direction, decision=decision,
                     reason=reason, flags=tuple(json.loads(flags or "[]")), credential_id=cred, product=product,
                     persons=persons, kind=kind, presentation_id=pid, at=at, annulled=annulled,
                     received_at=received_at)


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
