"""The gate's SQLite ledger: recording taps as MemoryLedger would, annulments, passages, the clock floor,
the replay cache and the outbox."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from citypass.credential.codes import present
from citypass.credential.reasons import Reason
from citypass.credential.snapshot import load_snapshot
from citypass.errors import InvalidInput
from citypass.gate.decision import Decision, Usage, decide, usage_after
from citypass.gate.ledger import LedgerConfig, TapNotFound
from citypass.gate.ledger.outbox import read_backlog
from citypass.gate.memory_ledger import MemoryLedger
from citypass.gate.policy import Direction, TapKind
from tests.helpers.ledger import NOW, Issued, ctx_for, denied_at
from tests.helpers.ledger import issued as issued


# -- the ledger answers like MemoryLedger --------------------------------------------------------------
class ReferenceLedger(MemoryLedger):
    """MemoryLedger with metro tap-in kept per credential (as the SQLite ledger does; see report)."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self._tap_in: dict[bytes, tuple[int | None, int | None]] = {}

    def usage(self, credential_id: bytes, site: int) -> Usage:
        at, where = self._tap_in.get(credential_id, (None, None))
        return replace(super().usage(credential_id, site), tapped_in_at=at, tapped_in_site=where)

    def record(self, decision: Decision, site: int) -> None:
        super().record(decision, site)
        if decision.allowed and decision.credential and decision.kind in (TapKind.TAP_IN, TapKind.TAP_OUT):
            after = usage_after(decision, self.usage(decision.credential.id, site), site)
            self._tap_in[decision.credential.id] = (after.tapped_in_at, after.tapped_in_site)


def test_decisions_match_the_memory_ledger(issued: Issued) -> None:
    data = issued.export()
    reference = ReferenceLedger(load_snapshot(data, issued.root))
    dynamic = present(issued.codes["bound"], issued.holder, NOW + 100)
    steps = [
        ("group", "museum", Direction.ENTRY, 10, True, None, 3),  # the party of 3 at once
        ("group", "museum", Direction.ENTRY, 20, False, Reason.ALREADY_USED, 0),
        ("annual", "west-lake", Direction.ENTRY, 30, True, None, 1),
        ("annual", "west-lake", Direction.ENTRY, 90, False, Reason.PASSBACK, 0),
        ("annual", "west-lake", Direction.EXIT, 95, True, None, 1),
        ("annual", "west-lake", Direction.ENTRY, 30 + 31 * 60, True, None, 1),
        ("transit", "station-a", Direction.ENTRY, 2000, True, None, 1),
        ("transit", "station-a", Direction.ENTRY, 2010, False, Reason.ALREADY_TAPPED_IN, 0),
        ("transit", "station-b", Direction.EXIT, 2900, True, None, 1),  # out at another station
        ("transit", "station-b", Direction.ENTRY, 3000, True, None, 1),
        (dynamic, "west-lake", Direction.ENTRY, 100, True, None, 1),
        (dynamic, "west-lake", Direction.ENTRY, 105, False, Reason.REPLAYED_PRESENTATION, 0),
        ("revoked", "west-lake", Direction.ENTRY, 110, False, Reason.REVOKED, 0),
        ("lost_phone", "west-lake", Direction.ENTRY, 120, False, Reason.HOLDER_REVOKED, 0),
        ("CP1:NOT-A-CODE", "west-lake", Direction.ENTRY, 130, False, Reason.MALFORMED_CODE, 0),
    ]
    with issued.ledger() as ledger:
        ledger.load_snapshot(data)
        for code, site, direction, offset, allowed, reason, persons in sorted(steps, key=lambda s: s[3]):
            ctx = ctx_for(ledger, site, direction)
            text = issued.codes.get(code, code)
            ours, theirs = decide(text, ledger, ctx, NOW + offset), decide(text, reference, ctx, NOW + offset)
            fields = (ours.allowed, ours.reason, ours.persons, ours.kind, ours.flags, ours.effective_now)
            assert fields == (theirs.allowed, theirs.reason, theirs.persons, theirs.kind, theirs.flags,
                              theirs.effective_now), (code, site, offset)
            assert (ours.allowed, ours.reason, ours.persons) == (allowed, reason, persons), (code, site)
            ledger.record(ours, ctx)
            reference.record(theirs, site=ctx.site.number)
        assert ledger.occupancy(2) == 3 and ledger.occupancy(1) == 2  # museum party; west-lake 3 in, 1 out
        assert len(ledger.pending(100)) == len(steps)


def test_metro_tap_in_is_per_credential_not_per_station(issued: Issued) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        a, b = ctx_for(ledger, "station-a"), ctx_for(ledger, "station-b", Direction.EXIT)
        tap_in = decide(issued.codes["transit"], ledger, a, NOW + 10)
        ledger.record(tap_in, a)
        tap_out = decide(issued.codes["transit"], ledger, b, NOW + 600)
        assert tap_out.kind is TapKind.TAP_OUT and Reason.NOT_TAPPED_IN not in tap_out.flags
        cred = tap_in.credential
        assert cred is not None
        assert ledger.usage(cred.id, 4).tapped_in_site == 3


# -- taps: annul, passages, stages, idempotency -----------------------------------------------------
def test_annul_gives_persons_back_once(issued: Issued) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        museum = ctx_for(ledger, "museum")
        grant = decide(issued.codes["group"], ledger, museum, NOW + 10)
        tap = ledger.record(grant, museum)
        cred = grant.credential
        assert cred is not None and tap.persons == 3 and ledger.occupancy(2) == 3
        annulled = ledger.annul(tap.tap_id, 2, NOW + 20)
        assert annulled.annulled == 2 and ledger.usage(cred.id, 2).persons_used == 1
        assert ledger.occupancy(2) == 1
        ledger.annul(tap.tap_id, 2, NOW + 21)
        ledger.annul(tap.tap_id, 1, NOW + 22)  # idempotent by tap id: the first report stands
        assert ledger.usage(cred.id, 2).persons_used == 1 and ledger.occupancy(2) == 1
        assert [r.kind for r in ledger.pending(10)] == ["tap", "annul"]
        assert decide(issued.codes["group"], ledger, museum, NOW + 30).persons == 2


def test_annul_of_an_annual_entry_lifts_passback(issued: Issued) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        lake = ctx_for(ledger, "west-lake")
        first = ledger.record(decide(issued.codes["annual"], ledger, lake, NOW + 10), lake)
        second = ledger.record(decide(issued.codes["annual"], ledger, lake, NOW + 10 + 31 * 60), lake)
        assert decide(issued.codes["annual"], ledger, lake, NOW + 32 * 60).reason is Reason.PASSBACK
        ledger.annul(second.tap_id, 1, NOW + 32 * 60)
        again = decide(issued.codes["annual"], ledger, lake, NOW + 32 * 60)
        assert again.allowed  # the earlier entry (31 minutes ago) is the one that counts again
        denied = ledger.record(decide(issued.codes["revoked"], ledger, lake, NOW + 33 * 60), lake)
        with pytest.raises(ValueError):
            ledger.annul(denied.tap_id, 1)
        with pytest.raises(ValueError):
            ledger.annul(first.tap_id, 2)
        with pytest.raises(TapNotFound):
            ledger.annul("no-such-tap", 1)


def test_passages_stages_and_retried_records_are_idempotent(issued: Issued) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        museum = ctx_for(ledger, "museum")
        grant = decide(issued.codes["group"], ledger, museum, NOW + 10)
        tap = ledger.record(grant, museum, {"captured": 1.0, "decoded": 1.01, "decided": 1.02})
        assert set(tap.stages) == {"captured", "decoded", "decided", "committed"}
        assert ledger.record(grant, museum, tap_id=tap.tap_id) == tap  # a retry does not count twice
        assert ledger.confirm_passage(tap.tap_id, 0, 2.0) and not ledger.confirm_passage(tap.tap_id, 0, 2.5)
        assert ledger.confirm_passage(tap.tap_id, 2, 3.0)
        with pytest.raises(ValueError):
            ledger.confirm_passage(tap.tap_id, 3, 3.0)
        denied = ledger.record(decide(issued.codes["revoked"], ledger, museum, NOW + 11), museum)
        with pytest.raises(ValueError):
            ledger.confirm_passage(denied.tap_id, 0, 3.0)
        assert ledger.set_stage(tap.tap_id, "relay", 1.5) and not ledger.set_stage(tap.tap_id, "relay", 1.5)
        stored = ledger.tap(tap.tap_id)
        assert stored is not None and stored.passages == {0: 2.0, 2: 3.0} and stored.stages["relay"] == 1.5
        assert [r.kind for r in ledger.pending(10)] == ["tap", "passage", "passage", "tap", "stage"]
        cred = grant.credential
        assert cred is not None and ledger.usage(cred.id, 2).persons_used == 3
        with pytest.raises(ValueError):
            ledger.record(grant, museum, {"decided": float("nan")})


def test_clock_floor_only_increases(issued: Issued) -> None:
    rng = random.Random(7)
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        lake = ctx_for(ledger, "west-lake")
        expected = NOW
        for _ in range(40):
            at = NOW + rng.randint(-10_000, 10_000)
            ledger.record(denied_at(at), lake)
            expected = max(expected, at)
            assert ledger.clock_floor == expected
        ledger.load_snapshot(issued.export(NOW + 1), force=True)
        assert ledger.clock_floor == expected
        late = decide(issued.codes["annual"], ledger, lake, now=0)  # an RTC-less gate booting in 1970
        assert Reason.CLOCK_UNTRUSTED in late.flags and late.effective_now == expected


def test_replay_cache_is_pruned_by_the_floor_not_a_runaway_clock(issued: Issued) -> None:
    with issued.ledger(config=LedgerConfig(replay_retention_s=60)) as ledger:
        ledger.load_snapshot(issued.export())
        lake = ctx_for(ledger, "west-lake")
        shown = decide(present(issued.codes["bound"], issued.holder, NOW + 100), ledger, lake, NOW + 100)
        ledger.record(shown, lake)
        pid = shown.presentation_id
        assert pid is not None and ledger.presentation_seen(pid)
        ledger.prune(NOW + 10**6)  # the clock jumped; the newest tap is still at NOW + 100
        assert ledger.presentation_seen(pid)
        ledger.record(denied_at(NOW + 200), lake)
        ledger.prune(NOW + 200)
        assert not ledger.presentation_seen(pid)


# -- outbox --------------------------------------------------------------------------------------------
def test_outbox_pending_ack_and_prune(issued: Issued) -> None:
    with issued.ledger(config=LedgerConfig(outbox_retention_days=1)) as ledger:
        ledger.load_snapshot(issued.export())
        lake = ctx_for(ledger, "west-lake")
        ids = [ledger.record(denied_at(NOW + i), lake).tap_id for i in range(10)]
        rows = ledger.pending(100)
        assert [r.tap_id for r in rows] == ids and ledger.backlog() == 10
        assert [r.seq for r in rows] == sorted(r.seq for r in rows)
        assert ledger.pending(3) == rows[:3]
        assert ledger.pending(3, after=rows[2].seq) == rows[3:6]  # the uploader's window reads after its cursor
        assert ledger.pending(100, after=rows[-1].seq) == []
        assert all(r.data()["event_id"] == r.event_id and r.data()["decision"] == "deny" for r in rows)
        assert ledger.mark_uploaded([r.event_id for r in rows[:4]], at=NOW + 50) == 4
        assert ledger.mark_uploaded([rows[0].event_id, "unknown"], at=NOW + 60) == 0
        assert ledger.backlog() == 6 and ledger.pending(100) == rows[4:]
        ledger.prune(NOW + 1000 * 86_400)
        assert ledger.pending(100) == rows[4:]  # never-acked rows survive any age
        assert ledger.tap(ids[0]) is None and ledger.tap(ids[5]) is not None
        count = ledger.db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        assert count == 6
        assert read_backlog(ledger.config.path) == 6  # the read-only monitor sees what the gate sees


def test_appended_events_are_uploaded_like_recorded_ones(issued: Issued) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        fields = {"gate_id": "g", "decision": "allow"}
        ids = ledger.append_events([("tap", f"t{i}", fields, NOW, NOW * 1000 + i) for i in range(3)])
        rows = ledger.pending(10)
        assert [r.event_id for r in rows] == ids and [r.tap_id for r in rows] == ["t0", "t1", "t2"]
        assert rows[0].data() == {"event_id": ids[0], "kind": "tap", "tap_id": "t0", **fields}
        with pytest.raises(InvalidInput, match="unknown outbox event kind"):
            ledger.append_events([("tap", "t3", fields, NOW, 0), ("bogus", "t4", fields, NOW, 0)])
        assert ledger.backlog() == 3  # the refused batch left nothing behind
