"""The gate's SQLite ledger: real files, real signed snapshots from a real issuer, real kills."""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlite_utils import Database

from credential.claims import Mode
from credential.codes import parse, present
from credential.keys import SigningKey, VerifyKey
from credential.reasons import Reason
from credential.sites import SiteSettings
from credential.snapshot import load_snapshot
from credential.verify import Verdict
from gate.decision import Decision, Direction, GateContext, TapKind, Usage, decide, usage_after
from gate.ledger import (
    SCHEMA_VERSION,
    GateLedger,
    LedgerBusy,
    LedgerConfig,
    SchemaError,
    SiteNotConfigured,
    SnapshotRefused,
    TapNotFound,
)
from gate.ledger.connection import connect
from gate.ledger.migrations import MIGRATIONS, migrate, schema_version
from gate.memory_ledger import MemoryLedger
from issuer.home import IssuerHome
from issuer.service import Issuer
from tests.ledger_crash_worker import kill_repeatedly

NOW = 1_800_000_000
SITES = [("west-lake", "scenic"), ("museum", "museum"), ("station-a", "metro"), ("station-b", "metro")]


@dataclass
class Issued:
    issuer: Issuer
    root: VerifyKey
    codes: dict[str, str]
    holder: SigningKey
    tmp: Path

    def export(self, now: int = NOW) -> bytes:
        return self.issuer.export(now)

    def ledger(self, config: LedgerConfig | None = None) -> GateLedger:
        return GateLedger.open(self.tmp / "ledger.sqlite3", root=self.root, config=config)


@pytest.fixture
def issued(tmp_path: Path) -> Issued:
    issuer = Issuer.init(IssuerHome(tmp_path / "issuer"), SITES, now=NOW)
    holder, lost = SigningKey.generate(), SigningKey.generate()
    codes = {
        "annual": issuer.mint_annual(["west-lake"], now=NOW),
        "group": issuer.mint_group("museum", 3, now=NOW),
        "transit": issuer.mint_transit("rider-1", Mode.METRO, now=NOW, valid_to=NOW + 86_400 * 30),
        "revoked": issuer.mint_annual(["west-lake"], now=NOW),
        "bound": issuer.mint_annual(["west-lake"], now=NOW, holder=holder.public),
        "lost_phone": issuer.mint_annual(["west-lake"], now=NOW, holder=lost.public),
    }
    issuer.revoke(codes["revoked"], now=NOW)
    issuer.revoke_holder(lost.public, now=NOW)
    return Issued(issuer, issuer.root_key().public, codes, holder, tmp_path)


def ctx_for(ledger: GateLedger, site: str, direction: Direction = Direction.ENTRY) -> GateContext:
    settings = ledger.site(site)
    assert settings is not None
    return GateContext("gate-1", settings, direction)


def dump(ledger: GateLedger) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table: what "unchanged" means."""
    conn = ledger.db.conn
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}


def denied_at(effective: int) -> Decision:
    return Decision(False, Reason.NOT_CITYPASS, Verdict(False, Reason.NOT_CITYPASS), effective)


# -- snapshots ----------------------------------------------------------------------------------------
def test_snapshot_from_a_real_issuer_loads(issued: Issued) -> None:
    data = issued.export()
    with issued.ledger() as ledger:
        snap = ledger.load_snapshot(data)
        assert ledger.seq == snap.seq and ledger.synced_at == NOW and ledger.clock_floor == NOW
        assert ledger.trust == snap.trust and ledger.trust_error is None
        assert [s.name for s in ledger.sites()] == [name for name, _ in SITES]
        assert all(ledger.is_revoked(i) for i in snap.revoked) and len(snap.revoked) == 1
        assert all(ledger.is_holder_revoked(h) for h in snap.revoked_holders)
        assert not ledger.is_revoked(b"\x00" * 8) and not ledger.is_holder_revoked(b"\x00" * 16)


def test_tampered_or_foreign_snapshots_are_refused_and_change_nothing(issued: Issued, tmp_path: Path) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        before = dump(ledger)
        issued.issuer.revoke(issued.codes["annual"], now=NOW + 10)
        newer = issued.export(NOW + 10)
        for position in (len(newer) - 1, len(newer) // 2, 200):  # signature, payload, trust list
            tampered = bytearray(newer)
            tampered[position] ^= 0x01
            with pytest.raises(SnapshotRefused):
                ledger.load_snapshot(bytes(tampered))
            assert dump(ledger) == before
        other = Issuer.init(IssuerHome(tmp_path / "other"), SITES, now=NOW)
        with pytest.raises(SnapshotRefused):
            ledger.load_snapshot(other.export(NOW + 20))  # signed by another root
        with pytest.raises(SnapshotRefused):
            ledger.load_snapshot(newer, other.root_key().public)  # not the root the ledger pinned
        assert dump(ledger) == before
        ledger.load_snapshot(newer)  # the genuine one still goes in
        assert ledger.is_revoked(parse(issued.codes["annual"]).credential.id)


def test_older_seq_is_refused_unless_forced_and_same_seq_refreshes(issued: Issued) -> None:
    old = issued.export(NOW)
    issued.issuer.revoke(issued.codes["group"], now=NOW + 5)
    new = issued.export(NOW + 5)
    with issued.ledger() as ledger:
        ledger.load_snapshot(new)
        seq = ledger.seq
        assert seq is not None
        with pytest.raises(SnapshotRefused, match="older"):
            ledger.load_snapshot(old)
        assert ledger.seq == seq
        ledger.load_snapshot(issued.export(NOW + 3600))  # nothing changed, but known fresh as of then
        assert ledger.seq == seq and ledger.synced_at == NOW + 3600
        ledger.load_snapshot(old, force=True)
        assert ledger.seq == seq - 1 and ledger.clock_floor == NOW + 3600  # the floor never goes back


def test_apply_delta_needs_its_base(issued: Issued) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        seq = ledger.seq
        assert seq is not None
        with pytest.raises(SnapshotRefused):
            ledger.apply_delta(base_seq=seq - 1, seq=seq + 1, issued_at=NOW + 1, revoked=[b"\x01" * 8])
        extra = [bytes([i]) * 8 for i in range(2, 50)] + [b"\x09" * 16]
        assert ledger.apply_delta(base_seq=seq, seq=seq + 1, issued_at=NOW + 9, revoked=extra,
                                  revoked_holders=[b"\x07" * 16]) == len(extra) + 1
        assert all(ledger.is_revoked(i) for i in extra) and ledger.is_holder_revoked(b"\x07" * 16)
        ledger.apply_delta(base_seq=seq + 1, seq=seq + 2, issued_at=NOW + 8, unrevoked=extra[:3])
        assert not ledger.is_revoked(extra[0]) and ledger.is_revoked(extra[3])
        assert ledger.seq == seq + 2 and ledger.synced_at == NOW + 9 and ledger.clock_floor == NOW + 9


def test_a_stored_trust_list_is_rechecked_against_the_pinned_root(issued: Issued) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
    with GateLedger.open(issued.tmp / "ledger.sqlite3", root=SigningKey.generate().public) as ledger:
        assert ledger.trust.keys == () and ledger.trust_error is not None
        ctx = ctx_for(ledger, "west-lake")
        assert decide(issued.codes["annual"], ledger, ctx, NOW + 1).reason is Reason.UNKNOWN_KEY


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
        assert all(r.data()["event_id"] == r.event_id and r.data()["decision"] == "deny" for r in rows)
        assert ledger.mark_uploaded([r.event_id for r in rows[:4]], at=NOW + 50) == 4
        assert ledger.mark_uploaded([rows[0].event_id, "unknown"], at=NOW + 60) == 0
        assert ledger.backlog() == 6 and ledger.pending(100) == rows[4:]
        ledger.prune(NOW + 1000 * 86_400)
        assert ledger.pending(100) == rows[4:]  # never-acked rows survive any age
        assert ledger.tap(ids[0]) is None and ledger.tap(ids[5]) is not None
        count = ledger.db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        assert count == 6


# -- durability, schema, locking -------------------------------------------------------------------
def test_reopening_keeps_everything(issued: Issued) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        ledger.set_identity("gate-7", 2, Direction.ENTRY)
        museum = ledger.context()
        tap = ledger.record(decide(issued.codes["group"], ledger, museum, NOW + 10), museum, {"decided": 5.0})
        before = dump(ledger)
        seq, trust = ledger.seq, ledger.trust
    with GateLedger.open(issued.tmp / "ledger.sqlite3") as again:  # no root: the stored one verifies
        assert dump(again) == before and again.seq == seq and again.trust == trust
        assert again.tap(tap.tap_id) == tap and again.context() == museum
        assert decide(issued.codes["group"], again, museum, NOW + 20).reason is Reason.ALREADY_USED


def test_context_needs_identity_and_site(issued: Issued) -> None:
    with issued.ledger() as ledger:
        with pytest.raises(SiteNotConfigured):
            ledger.context()
        ledger.set_identity("gate-1", 1)
        with pytest.raises(SiteNotConfigured):
            ledger.context()  # no snapshot yet
        ledger.load_snapshot(issued.export())
        assert ledger.context().site.name == "west-lake"


def test_migrates_an_empty_file_and_refuses_newer_or_foreign_ones(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite3"
    empty.write_bytes(b"")
    with GateLedger.open(empty) as ledger:
        assert schema_version(ledger.db) == SCHEMA_VERSION and ledger.seq is None and ledger.backlog() == 0
    conn = sqlite3.connect(empty)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="newer"):
        GateLedger.open(empty)
    foreign = tmp_path / "foreign.sqlite3"
    with Database(foreign) as other:
        other.table("people").insert({"name": "x"})
    with pytest.raises(SchemaError, match="not a City Pass"):
        GateLedger.open(foreign)


def test_an_older_file_is_upgraded_atomically(issued: Issued) -> None:
    with issued.ledger() as ledger:
        ledger.load_snapshot(issued.export())
        before = dump(ledger)

    def add_lane(db: Database) -> None:
        db.table("taps").add_column("lane", int)

    def broken(db: Database) -> None:
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("power cut, as far as the file can tell")

    db = connect(issued.tmp / "ledger.sqlite3")
    with pytest.raises(RuntimeError):
        migrate(db, [*MIGRATIONS, add_lane, broken])
    assert schema_version(db) == SCHEMA_VERSION + 1 and "half_done" not in db.table_names()
    assert "lane" in db.table("taps").columns_dict
    db.close()
    with pytest.raises(SchemaError):
        GateLedger.open(issued.tmp / "ledger.sqlite3")  # now newer than this software
    db = connect(issued.tmp / "ledger.sqlite3")
    assert dump_db(db) == before  # the upgrade kept every row
    db.close()


def dump_db(db: Database) -> dict[str, list[tuple[object, ...]]]:
    return {n: sorted(db.conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in db.table_names()}


def test_a_locked_ledger_fails_fast_and_reads_still_work(issued: Issued) -> None:
    with issued.ledger(config=LedgerConfig(busy_timeout_ms=20)) as ledger:
        ledger.load_snapshot(issued.export())
        lake = ctx_for(ledger, "west-lake")
        other = sqlite3.connect(issued.tmp / "ledger.sqlite3", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # e.g. a sync process installing a snapshot
        started = time.monotonic()
        with pytest.raises(LedgerBusy):
            ledger.record(denied_at(NOW + 1), lake)
        assert time.monotonic() - started < 1.0  # the 20 ms busy timeout, not a hang
        assert ledger.is_revoked(b"\x00" * 8) is False and ledger.clock_floor == NOW  # reads never wait
        other.execute("ROLLBACK")
        other.close()
        ledger.record(denied_at(NOW + 2), lake)
        assert ledger.backlog() == 1


def test_config_is_strict_and_self_describing() -> None:
    with pytest.raises(ValidationError):
        LedgerConfig.model_validate({"path": "x", "synchronus": "FULL"})
    with pytest.raises(ValidationError):
        LedgerConfig.model_validate({"synchronous": "OFF"})
    assert all(f.description for f in LedgerConfig.model_fields.values())
    LedgerConfig().check_replay_retention(30, 10)
    with pytest.raises(ValueError):
        LedgerConfig(replay_retention_s=40).check_replay_retention(30, 10)


# -- crash safety ----------------------------------------------------------------------------------
def test_killed_at_random_instants_loses_no_committed_tap(tmp_path: Path) -> None:
    issuer = Issuer.init(IssuerHome(tmp_path / "issuer"), [("west-lake", "scenic")], now=NOW)
    issuer.add_site(SiteSettings(number=2, name="free-entry", passback_minutes=0))
    codes = [issuer.mint_annual(["free-entry"], now=NOW) for _ in range(3)]
    revoked = issuer.mint_annual(["free-entry"], now=NOW)
    issuer.revoke(revoked, now=NOW)
    path = tmp_path / "ledger.sqlite3"
    with GateLedger.open(path, root=issuer.root_key().public) as ledger:
        ledger.load_snapshot(issuer.export(NOW))
        ledger.set_identity("gate-crash", 2)
    codes_file = tmp_path / "codes.json"
    codes_file.write_text(json.dumps([*codes, revoked]))
    worker = Path(__file__).parent / "ledger_crash_worker.py"
    run = kill_repeatedly([sys.executable, str(worker), str(path), str(codes_file)], kills=30,
                          rng=random.Random(2024), cwd=tmp_path)
    assert run.kills == 30 and not run.exits
    assert len(run.printed) > 30
    with GateLedger.open(path) as ledger:
        assert ledger.integrity_check().ok
        conn = ledger.db.conn
        stored = [r[0] for r in conn.execute("SELECT tap_id FROM taps")]
        assert len(stored) == len(set(stored))
        assert set(run.printed) <= set(stored) and len(run.printed) == len(set(run.printed))
        events = conn.execute(
            "SELECT kind, count(*), count(DISTINCT tap_id) FROM outbox GROUP BY kind"
        ).fetchall()
        annulled = conn.execute("SELECT count(*) FROM taps WHERE annulled > 0").fetchone()[0]
        assert ("tap", len(stored), len(stored)) in events
        assert annulled == 0 or ("annul", annulled, annulled) in events
        for cred_id, allowed, given_back in conn.execute(
            "SELECT credential_id, sum(persons), sum(annulled) FROM taps WHERE allowed GROUP BY credential_id"
        ):
            assert ledger.usage(cred_id, 2).persons_used == allowed - given_back
        persons, given_back = conn.execute(
            "SELECT sum(persons), sum(annulled) FROM taps WHERE allowed"
        ).fetchone()
        assert ledger.occupancy(2) == persons - given_back
