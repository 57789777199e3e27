"""What ingest keeps besides the taps, checked against recomputing it from the taps, on both backends: a small
city day (``citypass bench city``'s generator) uploaded in a shuffled batch order — journeys kept at ingest answer
``/v1/journeys`` windows as pairing the window's taps did, the incidents kept are the ones the rules find in all
the taps (no ``gate_jumper`` left behind by a ride's end uploaded before its start) — and, on PostgreSQL, a batch
whose transaction loses a deadlock is stored once, on a later try."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from citypass.bench.cityday import DAY, HOUR, CityDay, OutboxRow
from citypass.issuer.incidents import find_incidents
from citypass.issuer.ingest import ATTEMPTS, ingest
from citypass.issuer.journeys import FareTable, journeys, window_journeys
from citypass.issuer.records import Device, TransactionConflict
from citypass.issuer.watch import gate_jumpers, rebuild_journeys
from tests.helpers.databases import Databases, query

START = 1_800_000_000 - 1_800_000_000 % DAY - 8 * HOUR  # a local (UTC+8) midnight
FARES = FareTable.from_dict({"default_fare": 200, "pairs": [[6, 7, 300]]})
LIMIT = 4 * HOUR


def open_store(location: str | None, tmp_path: Path) -> Any:
    from citypass.issuer.postgres.store import PostgresStore
    from citypass.issuer.store import IssuerStore

    return IssuerStore(tmp_path / "issuer.db") if location is None else PostgresStore(location, pool_max=4)


@pytest.fixture
def store(issuer_database: Databases, tmp_path: Path) -> Iterator[Any]:
    s = open_store(issuer_database(), tmp_path)
    try:
        yield s
    finally:
        s.close()


def day_batches(day: CityDay, size: int, unflag: bool) -> list[tuple[str, list[OutboxRow]]]:
    """The day's rows as gate batches of at most ``size``, in a shuffled order (gates upload independently)."""
    pending: dict[str, list[OutboxRow]] = defaultdict(list)
    out = []
    for unit in day.units:
        for device, row in day.rows(unit):
            if unflag:  # a metro exit that does not flag a ride end it did not see start
                row = row._replace(body=row.body.replace('"flags":["not_tapped_in"]', '"flags":[]'))
            pending[device].append(row)
            if len(pending[device]) == size:
                out.append((device, pending.pop(device)))
    out += list(pending.items())
    random.Random(5).shuffle(out)
    return out


@pytest.mark.parametrize("unflag", [False, True], ids=["exits-flag-not-tapped-in", "exits-flag-nothing"])
def test_a_shuffled_city_day_keeps_what_recomputing_its_taps_finds(store: Any, unflag: bool) -> None:
    """With the metro exits' ``not_tapped_in`` flag and without it (then nothing but the open incident makes a
    ride whose end came first a candidate again)."""
    day = CityDay(1200, START, seed=3)
    for gate in day.gates():
        store.add_device(Device(gate.id, gate.site, gate.direction, "test", "enrolled", START))
    for device, rows in day_batches(day, 40, unflag):
        ingest(store, rows, device, START + DAY + HOUR)
    taps = store.taps(since=START - DAY, until=START + 3 * DAY)
    assert len(taps) > 1000

    kept = {(s.incident.kind, s.incident.incident_id) for s in store.stored_incidents(limit=100_000)}
    found = {(i.kind, i.incident_id) for i in [*find_incidents(taps, lambda _c: None), *gate_jumpers(taps)]}
    assert kept == found
    assert {k for k, _ in kept} == {"revoked_presented"}  # the day's riders all tapped in: no gate jumper

    under_way = 0
    for since, until, now in [(START, START + DAY, START + 2 * DAY), (START + 8 * HOUR, START + 9 * HOUR,
                              START + 9 * HOUR), (START + 17 * HOUR, START + 18 * HOUR + 600, START + 30 * DAY)]:
        window = [t for t in taps if since - LIMIT <= t.at < until]
        old = [j for j in journeys(window, FARES, now=min(until, now), max_journey_s=LIMIT)
               if max(j.started_at or 0, j.ended_at or 0) >= since]
        new = window_journeys(store.journey_legs(since, until, max_journey_s=LIMIT), FARES, since=since,
                              until=until, now=min(until, now), max_journey_s=LIMIT)
        assert new == old and len(new) > 20
        page = store.journey_legs(since, until, max_journey_s=LIMIT, limit=9)  # /v1/journeys?limit=9 reads 9 legs
        assert window_journeys(page, FARES, since=since, until=until, now=min(until, now)) == old[:9]
        under_way += sum(j.flag is None and not j.complete for j in new)  # rides under way at the window's end
    assert under_way > 0

    legs = sorted(store.journey_legs(0, 2**40, max_journey_s=0), key=lambda leg: leg.as_row())
    with store.write() as conn:
        conn.execute("DELETE FROM journeys")
    assert rebuild_journeys(store, page=700) == len(taps)  # an upgraded store pairs its stored taps once
    assert sorted(store.journey_legs(0, 2**40, max_journey_s=0), key=lambda leg: leg.as_row()) == legs


def test_a_batch_that_loses_a_deadlock_is_stored_once_on_a_later_try(pg_databases: Databases, tmp_path: Path) -> None:
    store = open_store(pg_databases(), tmp_path)
    try:
        day = CityDay(1000, START, seed=4)
        for gate in day.gates():
            store.add_device(Device(gate.id, gate.site, gate.direction, "test", "enrolled", START))
        [(device, rows), (other, more)] = sorted(day_batches(day, 30, False), key=lambda b: -len(b[1]))[:2]
        recount = store.recount_quarters
        failures = {"left": 2}

        def deadlocking(keys: Any) -> None:  # the server itself raises SQLSTATE 40P01 inside the upkeep
            recount(keys)
            if failures["left"]:
                failures["left"] -= 1
                with store.write() as conn:
                    conn.execute("DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = 'deadlock_detected'; END $$")

        store.recount_quarters = deadlocking
        result = ingest(store, rows, device, START + DAY)
        assert failures["left"] == 0 and result.new_taps == sum(r.kind == "tap" for r in rows)
        assert query(store, "SELECT count(*) FROM taps")[0][0] == result.new_taps  # once, not three times

        failures["left"] = ATTEMPTS
        with pytest.raises(TransactionConflict):
            ingest(store, more, other, START + DAY)
        assert query(store, "SELECT count(*) FROM tap_events WHERE device_id = ?", [other])[0][0] == 0
    finally:
        store.close()


def test_uploads_stored_together_are_stored_as_if_one_by_one(issuer_database: Databases, tmp_path: Path) -> None:
    """``ingest_many`` (an ingest worker storing the uploads waiting in one transaction) against ``ingest`` one
    upload at a time, in two stores of the same backend: the same result for every upload and the same stored
    day — taps and annulments, the rollup, quarantine and collisions, incidents, journeys, tallies — with the
    uploads that must not share a transaction among them: a batch resent at once, another device's batch
    re-uploaded (its event ids collide), an upload with an id that breaks the id rule."""
    from citypass.errors import InvalidInput
    from citypass.issuer.ingest import Upload, ingest_many

    day = CityDay(1500, START, seed=6)
    uploads = [Upload(device, rows) for device, rows in day_batches(day, 35, False)]
    devices = sorted({u.device_id for u in uploads if u.device_id})
    resent, stolen = uploads[3], uploads[10]
    thief = next(d for d in devices if d != stolen.device_id)
    bad = Upload(devices[0], [OutboxRow("not an id!", "t-x", "tap", "{}", START)])
    uploads[4:4] = [resent, Upload(thief, stolen.events), bad]
    uploads.insert(2, Upload(thief, uploads[20].events))  # a collision before the owner's own upload
    received = START + DAY + HOUR

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    together, alone = open_store(issuer_database(), tmp_path / "a"), open_store(issuer_database(), tmp_path / "b")
    try:
        for store in (together, alone):
            for gate in day.gates():
                store.add_device(Device(gate.id, gate.site, gate.direction, "test", "enrolled", START))
        outcomes: list[Any] = []
        for start in range(0, len(uploads), 30):  # what a busy worker finds waiting, 30 uploads at a time
            outcomes += ingest_many(together, uploads[start:start + 30], received, max_events=700)
        expected: list[Any] = []
        for upload in uploads:
            try:
                expected.append(ingest(alone, upload.events, upload.device_id, received))
            except InvalidInput as exc:
                expected.append(exc)
        assert [o if not isinstance(o, InvalidInput) else str(o) for o in outcomes] == \
               [e if not isinstance(e, InvalidInput) else str(e) for e in expected]
        assert sum(isinstance(o, InvalidInput) for o in outcomes) == 1
        assert outcomes[5].duplicates == len(resent.events) and outcomes[6].quarantined  # resent; collided

        def state(store: Any) -> tuple[Any, ...]:
            return (store.taps(since=0, until=2**40, limit=10**6),
                    store.tap_hours(0, 2**40) if hasattr(store, "tap_hours") else (),  # PostgreSQL's rollup
                    store.quarantined(),
                    sorted((s.incident.kind, s.incident.incident_id) for s in store.stored_incidents(limit=10**6)),
                    sorted(leg.as_row() for leg in store.journey_legs(0, 2**40, max_journey_s=0)),
                    store.quarter_tallies(0, 2**40))

        mine, theirs = state(together), state(alone)
        assert len(mine[0]) > 1200 and any(t.annulled for t in mine[0]) and mine[2]
        for a, b in zip(mine, theirs, strict=True):
            assert a == b
    finally:
        together.close()
        alone.close()


def test_overlapping_uploads_stored_at_once_by_two_workers_wait_instead_of_deadlocking(pg_databases: Databases,
                                                                                      tmp_path: Path) -> None:
    """Two workers (nodes) store the same two gates' batches in opposite orders at the same moment — a resend
    meeting its first copy — each in one transaction without retries: rows go in id order, so the second waits for
    the first and finds its rows stored; before, most rounds ended in a deadlock."""
    import threading

    from citypass.issuer.ingest import Uploader, prepare
    from citypass.issuer.records import TapEvent

    url = pg_databases()
    first, second = open_store(url, tmp_path), open_store(url, tmp_path)
    try:
        for gate in ("gate-x", "gate-y"):
            first.add_device(Device(gate, 1, "entry", "test", "enrolled", START))

        def batch(gate: str, n: int, r: int) -> Any:
            return prepare([TapEvent(f"{gate}-{r}-e{i}", f"{gate}-{r}-t{i}", "tap", {
                "gate_id": gate, "site": 1, "direction": "entry", "decision": "allow", "reason": None, "flags": [],
                "credential_id": f"{i:04x}", "product": 1, "persons": 1, "kind": "entry", "at": START + i}, START)
                for i in range(n)], Uploader(gate, 1, "entry"))

        for r in range(4):
            x, y = (batch("gate-x", 500, r), "gate-x"), (batch("gate-y", 500, r), "gate-y")
            barrier = threading.Barrier(2)
            out: dict[str, Any] = {}

            def run(name: str, store: Any, uploads: Any, barrier: threading.Barrier, out: dict[str, Any]) -> None:
                barrier.wait()
                try:
                    with store.write() as conn:
                        out[name] = store._store_batches(conn, uploads, START + DAY)
                except TransactionConflict as exc:
                    out[name] = exc

            workers = [threading.Thread(target=run, args=("one", first, [x, y], barrier, out)),
                       threading.Thread(target=run, args=("two", second, [y, x], barrier, out))]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            assert not any(isinstance(v, TransactionConflict) for v in out.values()), out
            assert sorted(sum(result.new_taps for result in v) for v in out.values()) == [0, 1000]
        assert query(first, "SELECT count(*) FROM taps")[0][0] == 4000
    finally:
        first.close()
        second.close()


def test_a_repeated_event_id_is_stored_as_its_first_copy_and_holds_up_no_other_upload(store: Any) -> None:
    """An upload that repeats an annulment's event id with a broken second copy: the first copy is the one validated
    and the one stored, so when the tap arrives the annulment applies — and the other gate's batch stored in the
    same transaction is stored and acknowledged either way."""
    from citypass.issuer.ingest import Upload, ingest_many

    for gate, direction in (("museum-a", "entry"), ("museum-b", "entry")):
        store.add_device(Device(gate, 3, direction, "test", "enrolled", START))

    def tap(gate: str, tap_id: str, persons: int = 3) -> OutboxRow:
        body = {"at": START + 60, "credential_id": "c0ffee", "decision": "allow", "direction": "entry",
                "event_id": "e-" + tap_id, "flags": [], "gate_id": gate, "kind": "entry", "persons": persons,
                "presentation_id": None, "product": 4, "reason": None, "site": 3, "tap_id": tap_id}
        return OutboxRow("e-" + tap_id, tap_id, "tap", json.dumps(body, separators=(",", ":")), START + 60)

    good = OutboxRow("a-1", "t-1", "annul", '{"at":1,"persons_unused":2}', START + 70)
    poison = OutboxRow("a-1", "t-1", "annul", '{"persons_unused":"x"}', START + 70)
    received = START + DAY
    [annulled] = ingest_many(store, [Upload("museum-a", [good, poison])], received)  # before its tap
    assert not isinstance(annulled, Exception) and annulled.acknowledged == ("a-1",)
    results = ingest_many(store, [Upload("museum-a", [tap("museum-a", "t-1")]),
                                  Upload("museum-b", [tap("museum-b", "t-2")])], received)
    assert [r.new_taps for r in results if not isinstance(r, Exception)] == [1, 1]
    stored = {t.tap_id: t for t in store.taps(since=0, until=2**40)}
    assert stored["t-1"].annulled == 2 and stored["t-2"].annulled == 0


def test_a_batch_from_a_clock_years_off_is_not_stored_with_the_others() -> None:
    """The upkeep reads each credential's taps over a run's whole span of tap times: a gate whose clock says 2000
    gets a transaction of its own, while a day's backlog joins other batches of the same day."""
    from citypass.issuer.ingest import Uploader, disjoint_groups, prepare
    from citypass.issuer.records import TapEvent

    def batch(gate: str, times: list[int]) -> Any:
        return prepare([TapEvent(f"{gate}-e{i}", f"{gate}-t{i}", "tap", {
            "gate_id": gate, "site": 1, "direction": "entry", "decision": "allow", "reason": None, "flags": [],
            "credential_id": "0a", "product": 1, "persons": 1, "kind": "entry", "at": at}, at)
            for i, at in enumerate(times)], Uploader(gate))

    day = [START + h * HOUR for h in range(0, 24, 3)]
    backlog, live, later, dead = (batch("g1", day), batch("g2", [START + 9 * HOUR]), batch("g3", [START + 20 * HOUR]),
                                  batch("g4", [946_684_800]))
    assert disjoint_groups([(live, "g2"), (backlog, "g1"), (later, "g3")], 100) == [[0, 1, 2]]
    assert disjoint_groups([(live, "g2"), (dead, "g4"), (later, "g3")], 100) == [[0], [1], [2]]
    assert disjoint_groups([(live, "g2"), (later, "g3")], 100) == [[0], [1]]  # 11 h apart, neither wide itself
    assert disjoint_groups([(live, "g2"), (batch("g5", [START + 14 * HOUR]), "g5")], 100) == [[0, 1]]  # 5 h
