"""``citypass bench sync``: taps through Mosquitto into the issuer store, end to end, on this machine.

Method (a temporary directory, deleted afterwards; every part real):

* a Mosquitto broker from a fresh broker home (TLS, client certificates, the generated ACL), started on
  a free loopback port;
* a real issuer home; its MQTT side (:class:`citypass.sync.issuer_sync.IssuerSync`: the ledger publisher and
  ``--workers`` ingest workers on one shared subscription) runs in a **separate process**, so the
  issuer's figure is not shared with the gates' interpreter;
* ``--gates`` gates, each a :class:`citypass.sync.gate_sync.GateSync` with its own SQLite ledger file, in this
  process. Their outboxes are filled first (``--taps`` per gate, rows exactly as the gate writes them),
  then all gates start at once.

1. **Throughput.** From the gates' start until the issuer's store holds every tap: taps/s end to end
   (read batch from the outbox → CBOR → QoS 1 publish → broker → worker → validate → one SQLite
   transaction with ``synchronous=FULL`` → ack → ``mark_uploaded``).
2. **Backlog drain.** One gate back online with ``--backlog`` buffered taps (a week at a busy lane):
   time until its outbox backlog is zero, i.e. until every tap is acknowledged.

Example::

    citypass bench sync                       # 4 gates × 5,000 taps, then a 100,000-tap backlog
    citypass bench sync --gates 8 --workers 4
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
import time
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import click

from citypass.bench.report import Row, print_rows
from citypass.bench.syncworld import SyncWorld, backlog, fill_outbox, wait_for
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer
from citypass.issuer.store import IssuerStore
from citypass.sync.endpoint import ClientFiles, Endpoint
from citypass.sync.gate_sync import GateSync, GateSyncConfig
from citypass.sync.issuer_sync import IssuerSync


def _issuer_process(issuer_path: str, host: str, port: int, files: dict[str, ClientFiles], workers: int,
                    ready: EventType, done: EventType) -> None:
    issuer = Issuer.open(IssuerHome(Path(issuer_path)))

    def endpoint(cn: str) -> Endpoint:
        return Endpoint(host, port, tls=files[cn])

    with IssuerSync(issuer, endpoint, workers=workers, group="bench-7q3z", tick_s=1.0):
        ready.set()
        done.wait()
    issuer.close()


def _tap_count(path: Path) -> int:
    store = IssuerStore(path)
    try:
        return store.tap_count()
    finally:
        store.close()


def _run_gates(world: SyncWorld, gates: list[str], expected: int, timeout: float) -> float:
    syncs = [GateSync(world.endpoint(g), GateSyncConfig(device_id=g, ledger_path=world.gate_ledger(g),
                                                        root=world.root, site=1)) for g in gates]
    started = time.perf_counter()
    for s in syncs:
        s.start()
    try:
        paths = [world.gate_ledger(g) for g in gates]
        if not wait_for(lambda: sum(backlog(p) for p in paths) == 0, timeout, interval=0.1):
            raise click.ClickException("the gates did not drain in time")
        elapsed = time.perf_counter() - started
    finally:
        for s in syncs:
            s.stop()
    stored = _tap_count(world.issuer.home.db_path)
    if stored < expected:
        raise click.ClickException(f"the issuer holds {stored} of {expected} taps")
    return elapsed


def run(gates: int, taps: int, backlog_taps: int, workers: int) -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="citypass-bench-sync-"))
    names = [f"gate-{i}" for i in range(1, gates + 1)]
    world = SyncWorld(tmp, gates=(*names, "gate-backlog"))
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_issuer_process, args=(str(world.issuer.home.path), world.broker.host, world.broker.port,
                                                     world.files, workers, ready, done))
    try:
        for name in names:
            fill_outbox(world.gate_ledger(name), name, taps)
        filled = time.perf_counter()
        fill_outbox(world.gate_ledger("gate-backlog"), "gate-backlog", backlog_taps)
        fill_s = time.perf_counter() - filled
        proc.start()
        if not ready.wait(30):
            raise click.ClickException("the issuer's MQTT workers did not start")
        total = gates * taps
        elapsed = _run_gates(world, names, total, 600)
        drain = _run_gates(world, ["gate-backlog"], total + backlog_taps, 900)
    finally:
        done.set()
        proc.join(30)
        world.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return [
        Row("end to end", f"{total / elapsed:,.0f} taps/s",
            f"{gates} gates × {taps:,} taps in {elapsed:.1f} s; {workers} ingest worker(s) in the issuer process"),
        Row("backlog drain", f"{drain:.1f} s", f"{backlog_taps:,} buffered taps from one gate "
                                                f"({backlog_taps / drain:,.0f} taps/s); buffered in {fill_s:.1f} s"),
    ]


@click.command("sync")
@click.option("--gates", default=4, show_default=True, type=click.IntRange(1, 64), help="Simulated gates.")
@click.option("--taps", default=5_000, show_default=True, type=click.IntRange(1), help="Taps per gate.")
@click.option("--backlog", "backlog_taps", default=100_000, show_default=True, type=click.IntRange(1),
              help="Taps buffered by the gate that comes back online.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 4),
              help="Issuer ingest workers on the shared subscription.")
def sync_command(gates: int, taps: int, backlog_taps: int, workers: int) -> None:
    """Taps/s from N gates through Mosquitto into the issuer store, and a 100,000-tap backlog's drain time."""
    rows = run(gates, taps, backlog_taps, workers)
    print_rows("sync over MQTT (Mosquitto, TLS, QoS 1, SQLite synchronous=FULL)", rows)
