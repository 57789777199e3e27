"""The gate's SQLite ledger: reopening, schema migrations, locking, configuration and real kills."""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlite_utils import Database

from citypass.credential.reasons import Reason
from citypass.credential.sites import SiteSettings
from citypass.gate.decision import decide
from citypass.gate.ledger import (
    SCHEMA_VERSION,
    GateLedger,
    LedgerBusy,
    LedgerConfig,
    LedgerSchemaError,
    SiteNotConfigured,
)
from citypass.gate.ledger.connection import connect
from citypass.gate.ledger.migrations import MIGRATIONS, migrate, schema_version
from citypass.gate.policy import Direction
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer
from tests.helpers.ledger import NOW, Issued, ctx_for, denied_at, dump
from tests.helpers.ledger import issued as issued
from tests.ledger_crash_worker import kill_repeatedly


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
    with pytest.raises(LedgerSchemaError, match="newer"):
        GateLedger.open(empty)
    foreign = tmp_path / "foreign.sqlite3"
    with Database(foreign) as other:
        other.table("people").insert({"name": "x"})
    with pytest.raises(LedgerSchemaError, match="not a City Pass"):
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
    with pytest.raises(LedgerSchemaError):
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
