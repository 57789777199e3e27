"""A full snapshot install does not stall decisions: a gate keeps deciding and recording taps (each committed
before its barrier would move) while its catch-up installs half a million revocations from a child process
(:mod:`citypass.gate.ledger.installer`), and never gets ``LedgerBusy``. Before, the install was one transaction
holding the write lock for its whole length."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from citypass.credential.codes import parse
from citypass.credential.snapshot import LedgerSnapshot
from citypass.gate.decision import decide
from citypass.gate.ledger import GateLedger, LedgerBusy, LedgerConfig
from citypass.gate.ledger.installer import install_in_child
from citypass.gate.ledger.snapshots import _in_turn
from citypass.gate.policy import Direction
from tests.helpers.codes import NOW, World

REVOKED = 500_000


def _snapshot(world: World, seq: int, revoked: frozenset[bytes]) -> bytes:
    trust = world.trust()
    return LedgerSnapshot(seq=seq, issued_at=NOW + seq, trust=trust, trust_signed=trust.sign(world.root),
                          sites=tuple(world.sites.values()), revoked=revoked, revoked_holders=frozenset(),
                          root=world.root.public).sign(world.ledger)


def test_decisions_are_recorded_throughout_a_large_snapshot_install(tmp_path: Path) -> None:
    world = World()
    path = tmp_path / "ledger.sqlite3"
    code = world.annual()
    lost = parse(code).credential.id
    blob = os.urandom(8 * REVOKED)
    revoked = frozenset(blob[i:i + 8] for i in range(0, len(blob), 8)) | {lost}
    big = _snapshot(world, 2, revoked)
    with GateLedger.open(path, root=world.root.public) as ledger:
        ledger.load_snapshot(_snapshot(world, 1, frozenset()))
        ledger.set_identity("lane-1", 1, Direction.ENTRY)

    done = threading.Event()
    failures: list[BaseException] = []

    def install() -> None:
        try:
            # as a running gate's sync catches up: a child process with the sync thread's busy timeout
            install_in_child(LedgerConfig(path=path, busy_timeout_ms=2000), [big], world.root.public)
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            done.set()

    gate = GateLedger.open(path, root=world.root.public)  # the daemon's connection: busy_timeout 50 ms
    try:
        ctx = gate.context()
        thread = threading.Thread(target=install)
        recorded = busy = 0
        slowest = 0.0
        thread.start()
        at = NOW + 10
        while not done.is_set():
            started = time.perf_counter()
            try:
                decision = decide(code, gate, ctx, at)
                gate.record(decision, ctx, {"decided": float(at)})
            except LedgerBusy:
                busy += 1
            else:
                recorded += 1
                slowest = max(slowest, time.perf_counter() - started)
            at += 3600  # past the passback window: every tap is a real admission
        thread.join()
        assert not failures, failures
        assert busy == 0, f"{busy} decision(s) hit LedgerBusy during the install ({recorded} recorded)"
        assert recorded >= 20, f"only {recorded} taps recorded during the install"
        assert gate.seq == 2 and gate.is_revoked(lost) and not gate.is_revoked(b"\x00" * 8)
        assert not decide(code, gate, ctx, at).allowed  # the new snapshot is in force
        tables = {r[0] for r in gate.db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not {t for t in tables if "_next_" in t or "_old_" in t}, tables
        assert gate.db.conn.execute("SELECT count(*) FROM revocations").fetchone()[0] == len(revoked)
        print(f"{recorded} taps recorded during the install; slowest decide+record {slowest * 1e3:.1f} ms")
    finally:
        gate.close()


def test_a_batch_that_misses_the_lock_waits_its_turn_and_gives_up_only_after_its_patience() -> None:
    """The install yields to the decisions: a batch whose BEGIN IMMEDIATE found the lock taken (LedgerBusy,
    nothing written) tries again after a growing pause; only a lock held past the patience fails the install."""
    attempts, pauses, done = [0], [], []

    @contextmanager
    def transaction(durable: bool) -> Iterator[None]:
        attempts[0] += 1
        if attempts[0] <= 3:
            raise LedgerBusy("ledger is locked by another writer")
        yield None

    assert _in_turn(transaction, False, lambda conn: done.append(conn) or 7, pauses.append) == 7
    assert attempts[0] == 4 and len(done) == 1 and pauses == [0.005, 0.01, 0.02]
    attempts[0] = -10**6  # busy for ever
    with pytest.raises(LedgerBusy):
        _in_turn(transaction, False, lambda conn: 0, lambda s: None, patience_s=0.05)
