"""``citypass bench ledger``: the gate ledger at fleet scale — 10 million revocations, on a real file.

Method (every figure is measured on this machine, in this process, on a file in a temporary
directory that is deleted afterwards):

1. **Build.** Draw N random 8-byte credential ids, sign them into a real snapshot (trust list signed
   by a root, snapshot signed by a ledger key, exactly as the issuer does), then time
   :meth:`GateLedger.load_snapshot`: signature checks and CBOR parsing (timed separately as
   :func:`citypass.credential.snapshot.load_snapshot`) plus the install: staged beside the live tables in
   short transactions and swapped in by one (:func:`citypass.gate.ledger.snapshots.install_paced`).
   **Stall.** Then this process decides and records a tap every 10 ms, as a lane's daemon would — alone
   (the machine's own noise), while a second snapshot of the same size installs on a thread of this
   process, and while the gate's catch-up installs it from a child process
   (:mod:`citypass.gate.ledger.installer`): the longest ``decide`` + ``record`` (committed,
   ``synchronous=FULL``) in each is the longest a decision waited, side by side.
2. **Update.** Apply 100,000 new revocations to the built ledger as a delta (the brief: "apply 100k
   updates in seconds"), then another 100,000 the plain ``executemany`` way for comparison.
3. **Look up.** 100,000 random ``is_revoked`` calls, half hits (ids from the snapshot) and half
   misses, each timed alone: p50 / p99 / max in µs. The file is in the OS page cache (it was just
   written), as it is on a gate that has been running; a cold flash read costs more once per page.
   A full :func:`citypass.gate.decision.decide` of a static annual pass on this ledger is timed beside them.
4. **Record.** ``record()`` of an allowed entry, committed before it returns, with
   ``synchronous=NORMAL`` and ``FULL``: taps/s and per-tap latency. In WAL mode NORMAL skips the
   fsync at commit (a power cut may lose the last taps); FULL pays it on every tap.

Example::

    citypass bench ledger                       # 10M revocations: a few minutes, ~1.5 GB of RAM
    citypass bench ledger --revocations 1000000 --taps 500
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import click

from citypass.bench.report import Row, print_rows, scratch_dir
from citypass.credential.claims import Annual, Credential
from citypass.credential.codes import issue
from citypass.credential.keys import SigningKey
from citypass.credential.sites import SiteSettings
from citypass.credential.snapshot import LedgerSnapshot, load_snapshot
from citypass.credential.trustlist import TrustedKey, TrustList
from citypass.gate.decision import Decision, GateContext, decide
from citypass.gate.ledger import GateLedger, LedgerBusy, LedgerConfig
from citypass.gate.ledger.connection import write
from citypass.gate.ledger.installer import install_in_child
from citypass.gate.ledger.revocations import insert_ids_executemany

NOW = 1_800_000_000


@dataclass(frozen=True)
class Latency:
    p50_us: float
    p99_us: float
    max_us: float

    @classmethod
    def of(cls, samples_ns: list[int]) -> Latency:
        ordered = sorted(samples_ns)
        middle, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
        return cls(middle / 1000, p99 / 1000, ordered[-1] / 1000)

    def text(self) -> str:
        return f"p50 {self.p50_us:,.1f} µs · p99 {self.p99_us:,.1f} µs · max {self.max_us:,.0f} µs"


def random_ids(count: int, width: int = 8) -> frozenset[bytes]:
    blob = os.urandom(count * width)
    ids = frozenset(blob[i:i + width] for i in range(0, len(blob), width))
    while len(ids) < count:  # a collision in 64 random bits: astronomically rare, but be exact
        ids |= {os.urandom(width)}
    return ids


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


class _World:
    """Keys, a site and a code, wired the way the issuer wires them."""

    def __init__(self) -> None:
        self.root, self.ledger_key, self.issuer_key = (SigningKey.generate() for _ in range(3))
        self.trust = TrustList(1, NOW, (
            TrustedKey(self.issuer_key.kid, self.issuer_key.public, "issuer", NOW - 86_400),
            TrustedKey(self.ledger_key.kid, self.ledger_key.public, "ledger", NOW - 86_400),
        ))
        self.site = SiteSettings(number=1, name="west-lake", passback_minutes=0)
        self.code = issue(Credential(os.urandom(8), Annual(frozenset({1})), NOW - 86_400, NOW + 300 * 86_400),
                          self.issuer_key)

    def snapshot(self, seq: int, revoked: frozenset[bytes]) -> bytes:
        snap = LedgerSnapshot(
            seq=seq, issued_at=NOW, trust=self.trust, trust_signed=self.trust.sign(self.root),
            sites=(self.site,), revoked=revoked, revoked_holders=random_ids(1000, 16), root=self.root.public,
        )
        return snap.sign(self.ledger_key)


def run_ledger_bench(revocations: int, lookups: int, updates: int, taps: int, directory: Path,
                     log: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    world = _World()
    path = directory / "ledger.sqlite3"

    log(f"drawing {revocations:,} random ids and signing a snapshot …")
    revoked = random_ids(revocations)
    sign_s, signed = _timed(lambda: world.snapshot(1, revoked))
    assert isinstance(signed, bytes)
    rows.append(Row("snapshot file (issuer side)", f"{len(signed) / 1e6:,.1f} MB",
                    f"encoded and signed in {sign_s:.1f} s"))

    log("verifying and parsing the snapshot alone …")
    parse_s, _ = _timed(lambda: load_snapshot(signed, world.root.public))
    log("installing it into a new ledger file …")
    ledger = GateLedger.open(path, root=world.root.public)
    total_s, _ = _timed(lambda: ledger.load_snapshot(signed))
    install_s = max(total_s - parse_s, 1e-9)
    size = sum(p.stat().st_size for p in directory.iterdir() if p.name.startswith(path.name))
    rows += [
        Row("load_snapshot: verify + parse", f"{parse_s:.2f} s", "COSE signatures, CBOR, frozenset"),
        Row("load_snapshot: install (staged, swapped)", f"{install_s:.2f} s",
            f"{revocations / install_s:,.0f} rows/s; lock held one batch at a time, each sized to about 8 ms"),
        Row(f"load_snapshot: total, {revocations:,} revocations", f"{total_s:.2f} s",
            f"{revocations / total_s:,.0f} rows/s end to end; file {size / 1e6:,.0f} MB"),
    ]

    log("deciding every 10 ms alone, then while another snapshot installs on a thread, then from a child …")
    rows += _stall_rows(ledger, world, world.snapshot(1, revoked | random_ids(1000)))

    log(f"applying {updates:,} revocation updates as a delta …")
    fresh = random_ids(updates)
    delta_s, _ = _timed(lambda: ledger.apply_delta(base_seq=1, seq=2, issued_at=NOW + 1, revoked=fresh))
    rows.append(Row(f"apply {updates:,} updates (delta)", f"{delta_s:.2f} s",
                    f"{updates / delta_s:,.0f} rows/s"))
    plain = random_ids(updates)

    def executemany() -> None:
        with write(ledger.db.conn) as conn:
            insert_ids_executemany(conn, "revocations", plain)

    plain_s, _ = _timed(executemany)
    rows.append(Row("  same, plain executemany (comparison)", f"{plain_s:.2f} s",
                    f"{updates / plain_s:,.0f} rows/s"))
    ledger.checkpoint()

    log(f"timing {lookups:,} lookups …")
    rng = random.Random(1)
    hits = rng.sample(list(revoked), min(len(revoked), lookups // 2))  # a small test ledger has fewer ids
    misses = list(random_ids(lookups - lookups // 2))
    assert not any(ledger.is_revoked(m) for m in misses[:100])
    probes = [(True, h) for h in hits] + [(False, m) for m in misses]
    rng.shuffle(probes)
    timing: dict[bool, list[int]] = {True: [], False: []}
    clock = time.perf_counter_ns
    is_revoked = ledger.is_revoked
    for expected, probe in probes:
        started = clock()
        found = is_revoked(probe)
        timing[expected].append(clock() - started)
        assert found is expected
    for expected, label, count in ((True, "hit", len(hits)), (False, "miss", len(misses))):
        rows.append(Row(f"is_revoked {label} ({count:,})", Latency.of(timing[expected]).text(),
                        "target: p99 < 100 µs"))

    ctx = GateContext("bench", world.site)
    decide_ns = []
    for i in range(2000):
        started = clock()
        decide(world.code, ledger, ctx, NOW + i)
        decide_ns.append(clock() - started)
    rows.append(Row("decide() static annual pass (2,000)", Latency.of(decide_ns).text(),
                    "verify + revocation + usage on this ledger"))
    decision = decide(world.code, ledger, ctx, NOW + 10)
    ledger.close()

    modes: tuple[Literal["NORMAL", "FULL"], ...] = ("NORMAL", "FULL")
    for mode in modes:
        log(f"recording {taps:,} taps with synchronous={mode} …")
        rows.append(_record_rate(path, mode, decision, ctx, taps, world))
    return rows


def _stall_rows(ledger: GateLedger, world: _World, data: bytes) -> list[Row]:
    """Decide and record a tap every 10 ms, as a lane's daemon would, (a) alone for as long as an install
    takes — the machine's own noise —, (b) while a thread of this process installs ``data`` (the gate's
    catch-up before it moved to a child), (c) while the gate's catch-up path installs it from a child
    process (:func:`citypass.gate.ledger.installer.install_in_child`)."""
    config = ledger.config.model_copy(update={"busy_timeout_ms": 2000})  # the sync thread's patience
    root = world.root.public

    def on_thread() -> None:
        with GateLedger.open(config.path, root=root, config=config) as own:
            own.load_snapshot(data, force=True)

    def in_child() -> None:
        install_in_child(config, [data], root, force=True)

    _decide_for(ledger, world, 1.0)  # warm-up, not measured: the first decisions after the build are slower
    started = time.perf_counter()
    child = _decide_while(ledger, world, in_child)
    took = time.perf_counter() - started
    thread = _decide_while(ledger, world, on_thread)
    alone = _decide_for(ledger, world, took)
    return [_stall_row(alone, "no install (the same loop alone, as long as an install)"),
            _stall_row(thread, "installer on a thread of the deciding process"),
            _stall_row(child, "installer in a child process (the gate's catch-up)")]


def _decide_while(ledger: GateLedger, world: _World, install: Callable[[], None]) -> tuple[list[int], int]:
    failed: list[BaseException] = []

    def run() -> None:
        try:
            install()
        except BaseException as exc:  # reported below, on the benchmark's thread
            failed.append(exc)

    worker = threading.Thread(target=run, name="bench-install")
    worker.start()
    measured = _decide_until(ledger, world, worker.is_alive)
    worker.join()
    if failed:
        raise click.ClickException(f"the install failed: {failed[0]}")
    return measured


def _decide_for(ledger: GateLedger, world: _World, seconds: float) -> tuple[list[int], int]:
    end = time.perf_counter() + seconds
    return _decide_until(ledger, world, lambda: time.perf_counter() < end)


def _decide_until(ledger: GateLedger, world: _World, going: Callable[[], bool]) -> tuple[list[int], int]:
    ctx = GateContext("bench", world.site)
    ledger.set_identity("bench", world.site.number)
    samples: list[int] = []
    busy = 0
    at = NOW
    while going():
        started = time.perf_counter_ns()
        try:
            ledger.record(decide(world.code, ledger, ctx, at), ctx)
        except LedgerBusy:
            busy += 1
        samples.append(time.perf_counter_ns() - started)
        at += 1
        time.sleep(0.010)
    return samples, busy


def _stall_row(measured: tuple[list[int], int], what: str) -> Row:
    samples, busy = measured
    lat = Latency.of(samples)
    return Row(f"longest decision stall: {what}", f"{lat.max_us / 1000:.1f} ms",
               f"{len(samples):,} decide+record (FULL) meanwhile, p99 {lat.p99_us / 1000:.1f} ms, {busy} LedgerBusy")


def _record_rate(path: Path, mode: Literal["NORMAL", "FULL"], decision: Decision, ctx: GateContext, taps: int,
                 world: _World) -> Row:
    config = LedgerConfig(path=path, synchronous=mode)
    with GateLedger.from_config(config, root=world.root.public) as ledger:
        samples = []
        for _ in range(20):  # warm up the statement cache and the WAL
            ledger.record(decision, ctx)
        started_all = time.perf_counter()
        for _ in range(taps):
            started = time.perf_counter_ns()
            ledger.record(decision, ctx)
            samples.append(time.perf_counter_ns() - started)
        elapsed = time.perf_counter() - started_all
    lat = Latency.of(samples)
    mean_us = statistics.fmean(samples) / 1000
    return Row(f"record() synchronous={mode} ({taps:,} taps)", f"{taps / elapsed:,.0f} taps/s",
               f"p50 {lat.p50_us / 1000:.2f} ms · p99 {lat.p99_us / 1000:.2f} ms · "
               f"mean {mean_us / 1000:.2f} ms")


@click.command("ledger")
@click.option("--revocations", "-n", type=click.IntRange(min=1000), default=10_000_000, show_default=True,
              help="Revoked credential ids in the snapshot (10M takes a few minutes to build).")
@click.option("--lookups", type=click.IntRange(min=100), default=100_000, show_default=True,
              help="Random is_revoked() calls timed (half hits, half misses).")
@click.option("--updates", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Revocations applied to the built ledger as one delta.")
@click.option("--taps", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Taps recorded per synchronous mode.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build the ledger here (default: a new temporary directory). It is deleted afterwards.")
def ledger_command(revocations: int, lookups: int, updates: int, taps: int, directory: Path | None) -> None:
    """Ledger at scale: snapshot install, delta apply, revocation lookups and durable tap commits."""
    from rich.console import Console

    console = Console()
    with scratch_dir("citypass-bench-ledger-", directory) as work:
        started = time.perf_counter()
        rows = run_ledger_bench(revocations, lookups, updates, taps, work,
                                lambda msg: console.log(msg, highlight=False))
        elapsed = time.perf_counter() - started
    print_rows(f"Gate ledger (SQLite, WAL), {revocations:,} revocations — {elapsed:.0f} s in all", rows, console)
