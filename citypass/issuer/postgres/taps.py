"""PostgreSQL tables for ingested taps: every event once by event id, every tap once by tap id, taps by day.

:meth:`TapTables.store_batch` keeps the SQLite store's rules (:mod:`citypass.issuer.sqlite.taps`: ids belong to
the device that used them first, collisions and foreign tap ids are quarantined, an annulment applies once
whichever arrives first) and its shape — a few set-based statements per batch, not one per event: each
table's rows go in as one ``INSERT … SELECT FROM unnest(arrays)`` (one round trip, however many rows).

Several ingest workers, on any number of nodes, may store the same batch at the same moment (a gate resent
it; the broker redelivered it). What decides is the database, not a read made before: the events are
inserted ``ON CONFLICT (event_id) DO NOTHING RETURNING event_id`` — the second worker waits on the first's
uncommitted row and then skips it — and a tap only goes into ``taps`` when its id was claimed in ``tap_ids``
by this very statement. So a tap is stored, and counted in the ``tap_hours`` rollup, exactly once.

Taps live in one partition per UTC day (``taps_YYYYMMDD``), created before the batch's transaction under an
advisory lock so that two workers meeting a new day at once create it once. :meth:`TapTables.drop_taps_before`
is the retention policy: whole days of taps are dropped, and the events, tap ids, collisions and rollup rows
of those days deleted.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from citypass.issuer.ingest import PreparedBatch, PreparedEvent
from citypass.issuer.postgres.connection import PgBase
from citypass.issuer.records import IngestResult, Quarantined, QuarantineRecord
from citypass.issuer.sqlite.taps import _foreign, _record  # pure helpers, the same rows on both backends
from citypass.issuer.tap_records import TapRecord

DAY = 86_400
HOUR = 3600
#: Taps dated this far from their upload get a day partition; older or later ones (a gate clock far off) go
#: to the default partition ``taps_other`` rather than making a partition for every odd day.
PARTITION_WINDOW_S = 400 * DAY
#: Advisory lock key held while creating a day partition.
PARTITION_LOCK = 0x63697479706174

_TAP_COLUMNS = ("tap_id, gate_id, site, direction, decision, reason, flags, credential_id, product, persons, kind,"
                " presentation_id, at, annulled, received_at")
_INSERT_EVENTS = (
    "INSERT INTO tap_events (event_id, tap_id, kind, body, created_at, received_at, device_id, error)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::text[],"
    " %b::text[]) ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
_ROLLUP = (
    "INSERT INTO tap_hours AS h (hour, site, gate_id, direction, decision, product, taps, persons, annulled)"
    " SELECT * FROM unnest(%b::bigint[], %b::int[], %b::text[], %b::text[], %b::text[], %b::int[], %b::bigint[],"
    " %b::bigint[], %b::bigint[]) ON CONFLICT (hour, site, gate_id, direction, decision, product) DO UPDATE SET"
    " taps = h.taps + excluded.taps, persons = h.persons + excluded.persons, annulled = h.annulled + excluded.annulled"
)

# Lookups of a batch's ids are ``unnest(ids) CROSS JOIN LATERAL (… WHERE key = u.id OFFSET 0)``: one index probe
# per id whatever the planner believes of the table's size. A table (a day's partition) filled since its last
# ANALYZE looks nearly empty, and a plain join — or a LATERAL subquery the planner flattens into one; ``OFFSET 0``
# keeps it a subquery — then hashes the whole table, or scans the window by time: tens of milliseconds per
# batch, growing with the day.
_LOOKUP = (
    "SELECT 'e', e.event_id, e.device_id FROM unnest(%b::text[]) AS u(id) CROSS JOIN LATERAL"
    " (SELECT event_id, device_id FROM tap_events WHERE event_id = u.id OFFSET 0) e"
    " UNION ALL SELECT 't', i.tap_id, i.gate_id FROM unnest(%b::text[]) AS u(id) CROSS JOIN LATERAL"
    " (SELECT tap_id, gate_id FROM tap_ids WHERE tap_id = u.id OFFSET 0) i"
)
_TAP_ARRAYS = ("%b::text[], %b::text[], %b::int[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
               " %b::int[], %b::int[], %b::text[], %b::text[], %b::bigint[], %b::int[], %b::bigint[], %b::text[]")
_STORE = (
    f"WITH ev AS ({_INSERT_EVENTS}),"
    f" t AS (SELECT * FROM unnest({_TAP_ARRAYS}) AS t({_TAP_COLUMNS}, event_id)),"
    " claimed AS (INSERT INTO tap_ids (tap_id, gate_id, at) SELECT tap_id, gate_id, at FROM t"
    " WHERE event_id IN (SELECT event_id FROM ev) ON CONFLICT (tap_id) DO NOTHING RETURNING tap_id),"
    f" ins AS (INSERT INTO taps ({_TAP_COLUMNS}, event_id) SELECT * FROM t WHERE tap_id IN (SELECT tap_id FROM claimed)"
    " RETURNING at, site, gate_id, direction, decision, product, persons),"
    " roll AS (INSERT INTO tap_hours AS h (hour, site, gate_id, direction, decision, product, taps, persons, annulled)"
    " SELECT at - at %% 3600, site, gate_id, direction, decision, coalesce(product, -1), count(*), sum(persons), 0"
    " FROM ins GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6"
    " ON CONFLICT (hour, site, gate_id, direction, decision, product) DO UPDATE SET taps = h.taps + excluded.taps,"
    " persons = h.persons + excluded.persons)"
    " SELECT 'e', event_id FROM ev UNION ALL SELECT 't', tap_id FROM claimed"
)

RollupKey = tuple[int, int, str, str, str, int]


def partition_name(day_start: int) -> str:
    return "taps_" + datetime.fromtimestamp(day_start, UTC).strftime("%Y%m%d")


def rollup_key(tap: TapRecord) -> RollupKey:
    """The ``tap_hours`` row a tap is counted in (no product: -1)."""
    return (tap.at - tap.at % HOUR, tap.site, tap.gate_id, tap.direction, tap.decision,
            tap.product if tap.product is not None else -1)


class TapTables(PgBase):
    _partitions: set[int]
    _partitions_lock: threading.Lock

    def _known_partitions(self) -> set[int]:
        if not hasattr(self, "_partitions"):
            self._partitions_lock = threading.Lock()
            self._partitions = set()
        return self._partitions

    # -- ingest --------------------------------------------------------------------------------------
    def store_batch(self, batch: PreparedBatch, device_id: str | None, received_at: int) -> IngestResult:
        return self.store_batches([(batch, device_id)], received_at)[0]

    def store_batches(self, uploads: Sequence[tuple[PreparedBatch, str | None]],
                      received_at: int) -> list[IngestResult]:
        """Store several devices' batches in one transaction, with the statements of one: the same rules for each
        as if it came alone (its device owns what it uploads first). The caller keeps their event and tap ids
        disjoint (:func:`citypass.issuer.ingest.disjoint_groups`), so no batch's outcome depends on another's."""
        if not any(b.events for b, _ in uploads):
            return [IngestResult((), 0, 0) for _ in uploads]
        self.ensure_partitions([p.tap.at for batch, _ in uploads for p in batch.events
                                if p.tap is not None and p.error is None], received_at)
        results: list[IngestResult] = self.transact(self._store_batches, uploads, received_at)
        return results

    def _store_batches(self, conn: psycopg.Connection[Any], uploads: Sequence[tuple[PreparedBatch, str | None]],
                       received_at: int) -> list[IngestResult]:
        # One read for what is already stored: events by id (whose?) and taps by id (whose gate?).
        owners: dict[str, str | None] = {}
        holders: dict[str, str] = {}
        event_ids = [e for b, _ in uploads for e in b.event_ids]
        tap_ids = sorted({p.event.tap_id for b, _ in uploads for p in b.events})
        for which, ident, owner in conn.execute(_LOOKUP, [event_ids, tap_ids]):
            if which == "e":
                owners[ident] = owner
            else:
                holders[ident] = owner
        plans = []
        placed: set[str] = set()
        rows: list[tuple[Any, ...]] = []
        tap_rows: list[tuple[Any, ...]] = []
        for batch, device_id in uploads:
            events = batch.events
            clashes = [p for p in events
                       if p.event.event_id in owners and _foreign(owners[p.event.event_id], device_id)]
            recorded = self._record_collisions(conn, clashes, owners, device_id, received_at)
            candidates = _claim_tap_ids([p for p in events if p.event.event_id not in owners], device_id, holders)
            taps: dict[str, tuple[PreparedEvent, TapRecord]] = {}
            for p in candidates:
                if p.error is None and p.tap is not None:
                    taps.setdefault(p.tap.tap_id, (p, p.tap))
            rows += [(p.event.event_id, p.event.tap_id, p.event.kind, p.stored_body(), p.event.created_at,
                      received_at, device_id, p.error) for p in candidates]
            tap_rows += [(t.tap_id, t.gate_id, t.site, t.direction, t.decision, t.reason, _flags_json(t.flags),
                          t.credential_id, t.product, t.persons, t.kind, t.presentation_id, t.at, 0, received_at,
                          p.event.event_id) for p, t in taps.values() if t.tap_id not in placed]
            placed.update(taps)  # one row per tap id, whatever a caller passes (no key on taps stops a second)
            plans.append((batch, candidates, recorded, set(taps)))
        # One statement stores the events, claims the tap ids, stores the taps whose claim succeeded now and
        # counts them in the rollup: what it returns is what this transaction stored (another worker may have
        # stored the rest a moment before). Rows go in id order: two workers storing overlapping batches (a resend
        # meeting its first copy) lock the same rows in the same order, and wait for each other instead of
        # deadlocking.
        rows.sort(key=lambda row: row[0])
        tap_rows.sort(key=lambda row: row[0])
        inserted: set[str] = set()
        claimed: set[str] = set()
        for which, ident in conn.execute(_STORE, [*_columns(rows, 8), *_columns(tap_rows, 16)]):
            (inserted if which == "e" else claimed).add(ident)
        # An annulment may arrive before its tap (another batch, out of order) or after it.
        self._apply_annulments(conn, sorted({p.event.tap_id for _, candidates, _, _ in plans for p in candidates
                                             if p.event.event_id in inserted and p.error is None
                                             and p.event.kind in ("tap", "annul")}))
        results = []
        for batch, candidates, recorded, mine in plans:
            new = [p for p in candidates if p.event.event_id in inserted]
            quarantined = tuple(Quarantined(p.event.event_id, p.error) for p in new if p.error is not None)
            results.append(IngestResult(tuple(batch.event_ids), len(batch.events) - len(new) - len(recorded),
                                        len(mine & claimed), quarantined + recorded))
        return results

    @staticmethod
    def _roll_up_annulled(conn: psycopg.Connection[Any], annulled: Counter[RollupKey]) -> None:
        """Add annulled persons to the hourly rollup (taps are counted by the statement that stores them), rows in
        key order (no two batches deadlock)."""
        keys = sorted(annulled)
        if keys:
            conn.execute(_ROLLUP, _columns([(*k, 0, 0, annulled[k]) for k in keys], 9))

    def _record_collisions(self, conn: psycopg.Connection[Any], clashes: list[PreparedEvent],
                           owners: dict[str, str | None], device_id: str | None,
                           received_at: int) -> tuple[Quarantined, ...]:
        """Keep events whose id another device used first; the ones recorded now (a resend is a duplicate)."""
        if not clashes:
            return ()
        errors = {p.event.event_id: f"event id {p.event.event_id!r} was used first by device "
                                    f"{owners[p.event.event_id]!r}" for p in clashes}
        rows = conn.execute(
            "INSERT INTO tap_collisions (event_id, device_id, tap_id, kind, body, received_at, error)"
            " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[],"
            " %b::text[]) ON CONFLICT DO NOTHING RETURNING event_id",
            _columns([(p.event.event_id, device_id, p.event.tap_id, p.event.kind, p.stored_body(), received_at,
                       errors[p.event.event_id]) for p in clashes], 7)).fetchall()
        return tuple(Quarantined(r[0], errors[r[0]]) for r in rows)

    def _apply_annulments(self, conn: psycopg.Connection[Any], tap_ids: list[str]) -> None:
        if not tap_ids:
            return
        best: dict[str, int] = {}
        # Only the tap's own gate can annul it (an annulment uploaded by an admin names no device).
        for tap_id, body in conn.execute(
            "SELECT e.tap_id, e.body FROM unnest(%b::text[]) AS u(id) CROSS JOIN LATERAL"
            " (SELECT tap_id, body, device_id FROM tap_events WHERE tap_id = u.id AND kind = 'annul'"
            " AND error IS NULL OFFSET 0) e CROSS JOIN LATERAL (SELECT gate_id FROM tap_ids WHERE tap_id = u.id"
            " OFFSET 0) i"
            " WHERE e.device_id IS NULL OR e.device_id = i.gate_id", [tap_ids],
        ).fetchall():
            persons = _persons_unused(body)
            if persons:
                best[tap_id] = max(best.get(tap_id, 0), persons)
        if not best:
            return
        # A gate annuls a tap at most once; if two reports differ, the larger wins whatever the order.
        rows = conn.execute(
            f"SELECT t.{_TAP_COLUMNS.replace(', ', ', t.')} FROM unnest(%b::text[]) AS u(id) JOIN tap_ids i"
            " ON i.tap_id = u.id JOIN taps t ON t.tap_id = i.tap_id AND t.at = i.at ORDER BY t.tap_id FOR UPDATE OF t",
            [sorted(best)]).fetchall()
        annulled: Counter[RollupKey] = Counter()
        updates = []
        for row in rows:
            tap = _record(row)
            persons = best[tap.tap_id]
            if tap.decision == "allow" and tap.annulled < persons <= tap.persons:
                updates.append((persons, tap.tap_id, tap.at))
                annulled[rollup_key(tap)] += persons - tap.annulled
        if updates:
            with conn.cursor() as cur:
                cur.executemany("UPDATE taps SET annulled = %s WHERE tap_id = %s AND at = %s", updates)
            self._roll_up_annulled(conn, annulled)

    def ensure_partitions(self, times: Iterable[int], received_at: int) -> None:
        """Make the day partitions the taps at ``times`` (received at ``received_at``) belong in."""
        known = self._known_partitions()
        days = {at - at % DAY for at in times if abs(at - received_at) <= PARTITION_WINDOW_S} - known
        if not days:
            return
        with self._partitions_lock:
            for day in sorted(days - known):
                self._create_partition(day)
                known.add(day)

    def _create_partition(self, day: int) -> None:
        """Create a day's partition in a transaction of its own, committed before it is remembered: made inside
        the batch's transaction, a rollback of the batch would undo it while this node went on believing in it
        (and sent the day's taps to the default partition, where they would block creating it later)."""
        name = partition_name(day)
        try:
            with self.pool.connection() as conn, conn.transaction():
                # It waits for every open transaction that wrote taps (the new partition locks the parent); a
                # caller of this very thread holding one would wait forever: a minute, then an error that says so.
                conn.execute("SET LOCAL lock_timeout = '60s'")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITION_LOCK])
                if conn.execute("SELECT to_regclass(%s)", [name]).fetchone() in (None, (None,)):
                    conn.execute(f"CREATE TABLE {name} PARTITION OF taps FOR VALUES FROM ({day}) TO ({day + DAY})")
        except psycopg.errors.CheckViolation:
            pass  # taps of that day already sit in the default partition (stored before the day was in the window)

    def drop_taps_before(self, cutoff: int) -> list[str]:
        """Retention: drop the day partitions that end at or before ``cutoff`` (a UTC midnight) and delete what
        else belongs to those days (events and collisions received before the cutoff, tap ids, rollup rows, kept
        journeys, taps in the default partition).
        The partitions dropped, by name."""
        cutoff -= cutoff % DAY
        dropped = []
        with self.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITION_LOCK])
            for (name, bound) in conn.execute(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'taps'::regclass").fetchall():
                if not name.startswith("taps_2") and not name.startswith("taps_1"):
                    continue  # the default partition is trimmed row by row below
                upper = int(bound.rsplit("(", 1)[1].rstrip(")").strip("'"))
                if upper <= cutoff:
                    conn.execute(f"DROP TABLE {name}")
                    dropped.append(name)
            conn.execute("DELETE FROM taps_other WHERE at < %s", [cutoff])
            conn.execute("DELETE FROM tap_events WHERE received_at < %s", [cutoff])  # uploaded before the cutoff
            conn.execute("DELETE FROM tap_ids WHERE at < %s", [cutoff])
            conn.execute("DELETE FROM tap_collisions WHERE received_at < %s", [cutoff])
            conn.execute("DELETE FROM tap_hours WHERE hour < %s", [cutoff])
            conn.execute("DELETE FROM journeys WHERE coalesce(ended_at, at) < %s", [cutoff])  # legs of those days
        self._known_partitions().clear()
        return sorted(dropped)

    # -- reads ---------------------------------------------------------------------------------------
    def taps(self, *, site: int | None = None, since: int | None = None, until: int | None = None,
             credential_id: str | None = None, limit: int = 200_000) -> list[TapRecord]:
        where, params = ["true"], []
        for clause, value in (("site = %s", site), ("at >= %s", since), ("at < %s", until),
                              ("credential_id = %s", credential_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows = self.fetchall(f"SELECT {_TAP_COLUMNS} FROM taps WHERE {' AND '.join(where)} ORDER BY at, tap_id"
                             " LIMIT %s", [*params, limit])
        return [_record(row) for row in rows]

    def tap_count(self) -> int:
        return int(self.scalar("SELECT count(*) FROM taps"))

    def tap_hours(self, since: int, until: int, site: int | None = None) -> list[tuple[Any, ...]]:
        """The hourly rollup rows of ``[since, until)``: (hour, site, gate, direction, decision, product, taps,
        persons, annulled), ordered."""
        only = " AND site = %s" if site is not None else ""
        return self.fetchall("SELECT hour, site, gate_id, direction, decision, product, taps, persons, annulled"
                             f" FROM tap_hours WHERE hour >= %s AND hour < %s{only} ORDER BY 1, 2, 3, 4, 5, 6",
                             [since, until, *([site] if site is not None else [])])

    def quarantined(self, *, since: int | None = None, until: int | None = None,
                    limit: int = 100_000) -> list[QuarantineRecord]:
        window = {"since": since if since is not None else -(2**62), "until": until if until is not None else 2**62,
                  "limit": limit}
        rows = self.fetchall(
            "SELECT event_id, tap_id, kind, device_id, received_at, error, false FROM tap_events"
            " WHERE error IS NOT NULL AND received_at >= %(since)s AND received_at < %(until)s"
            " UNION ALL SELECT event_id, tap_id, kind, device_id, received_at, error, true FROM tap_collisions"
            " WHERE received_at >= %(since)s AND received_at < %(until)s ORDER BY 5, 1 LIMIT %(limit)s", window)
        return [QuarantineRecord(e, t, k, d, r, err, bool(c)) for e, t, k, d, r, err, c in rows]


def _claim_tap_ids(events: list[PreparedEvent], device_id: str | None,
                   holders: dict[str, str]) -> list[PreparedEvent]:
    """Quarantine events about a tap id that another device's tap holds (``holders``: in the store; or earlier
    in the batch); the others unchanged."""
    if device_id is None:
        return events
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


def _persons_unused(body: str) -> int:
    """An annulment's persons (validated before it was stored; 0 for anything else, never an exception that would
    roll back the batch of the tap it names)."""
    try:
        value = json.loads(body).get("persons_unused", 0)
    except (ValueError, AttributeError, RecursionError):
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 1000 else 0


def _flags_json(flags: tuple[str, ...]) -> str:
    return json.dumps(list(flags)) if flags else "[]"


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists, the parameters of an ``unnest(%s, %s, …)``."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
