"""``citypass bench site``: how fast the lanes of one site hear of each other's admissions, with and without the
city link.

Method (a temporary directory, deleted afterwards; every part real — :class:`citypass.bench.siteworld.SiteWorld`):

* a central Mosquitto with the issuer's MQTT side (ledger publisher, ingest worker), and the site's own
  Mosquitto bridged to it through a TCP link the benchmark can cut; TLS and the generated ACLs on both;
* ``N`` lanes at one site, each a :class:`citypass.sync.gate_sync.GateSync` with its own SQLite ledger, on the
  site broker. Each lane's decisions are made on the benchmark's thread against the lane's own ledger — the
  decision core deciding a freshly minted single-use reservation, the tap committed with ``synchronous=FULL``
  — and the lane's sync thread is poked after each commit, as the daemon does.

For ``N`` in ``--lanes`` (2, 4, 8), ``--taps`` admissions round-robin over the lanes, one every ``--every`` ms, first
with the city link up, then with it cut (the site broker's bridge down, the site network up). The figure is,
for every admission and every *other* lane, the time from the admitting lane's commit to the sibling's ledger
having applied it (both clocks are this machine's): what the brief's "lanes of one site share admissions within
p99 ≤ 500 ms" asks. That interval is also the race window: two lanes can both admit one single-use code only if
it is shown at both within it.

All lanes share this one Python process (and its GIL) and two cores with the brokers; on a site each lane is its
own device, so these figures are an upper bound.

Example::

    citypass bench site                        # N = 2, 4, 8; 60 admissions each, with and without the city link
    citypass bench site --lanes 8 --taps 200
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click

from citypass.bench.report import Row, print_rows
from citypass.bench.siteworld import SITE_NAME, SiteWorld
from citypass.bench.syncworld import wait_for
from citypass.gate.decision import decide
from citypass.gate.ledger.siblings import SiteLedger

TARGET_P99_MS = 500.0


@dataclass(frozen=True)
class Propagation:
    lanes: int
    city_link: bool
    samples: tuple[int, ...]  # ms, sorted
    expected: int

    def pct(self, q: float) -> float:
        if not self.samples:
            return float("nan")
        return float(self.samples[min(len(self.samples) - 1, int(q * len(self.samples)))])

    @property
    def p50(self) -> float:
        return self.pct(0.50)

    @property
    def p99(self) -> float:
        return self.pct(0.99)

    @property
    def max(self) -> float:
        return float(self.samples[-1]) if self.samples else float("nan")

    @property
    def missing(self) -> int:
        return self.expected - len(self.samples)


def _round(world: SiteWorld, taps: int, every_s: float) -> list[int]:
    """``taps`` admissions round-robin over the lanes; every sibling's applied − committed, in ms."""
    now = int(time.time())
    codes = [world.issuer.mint_reservation(SITE_NAME, now - 600, now + 3600, 1, now - 700) for _ in range(taps)]
    deciders = [world.decider(g) for g in world.gates]
    try:
        syncs = world.syncs
        started_ms = int(time.time() * 1000)
        for i, code in enumerate(codes):
            lane = i % len(deciders)
            ledger = deciders[lane]
            ctx = ledger.context()
            ledger.record(decide(code, ledger, ctx, int(time.time())), ctx, {"decided": time.time()})
            syncs[lane].poke()
            time.sleep(every_s)
        expected = taps * (len(deciders) - 1)
        sites = [SiteLedger(ledger) for ledger in deciders]
        wait_for(lambda: sum(len(s.propagation_ms(started_ms)) for s in sites) >= expected, 30, 0.05)
        return sorted(ms for s in sites for _, ms in s.propagation_ms(started_ms))
    finally:
        for ledger in deciders:
            ledger.close()


def _measure(n: int, taps: int, every_ms: int, tmp: Path) -> list[Propagation]:
    world = SiteWorld(tmp, n)
    try:
        with world.issuer_sync():
            syncs = [world.lane(gate) for gate in world.gates]
            if not wait_for(lambda: all(s.state.connected and s.state.central for s in syncs), 30):
                raise click.ClickException("the lanes did not connect to the site broker and its bridge")
            out = [Propagation(n, True, tuple(_round(world, taps, every_ms / 1000)), taps * (n - 1))]
            world.city_link.cut()
            if not wait_for(lambda: all(s.state.central is False for s in syncs), 60):
                raise click.ClickException("the lanes did not notice the city link go down")
            out.append(Propagation(n, False, tuple(_round(world, taps, every_ms / 1000)), taps * (n - 1)))
            return out
    finally:
        world.close()


def run_site(lanes: list[int], taps: int, every_ms: int) -> list[Propagation]:
    results = []
    for n in lanes:
        tmp = Path(tempfile.mkdtemp(prefix="citypass-bench-site-"))
        try:
            results += _measure(n, taps, every_ms, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def rows(results: list[Propagation]) -> list[Row]:
    return [Row(f"{r.lanes} lanes, city link {'up' if r.city_link else 'down'}",
                f"p50 {r.p50:.0f} ms, p99 {r.p99:.0f} ms, max {r.max:.0f} ms",
                f"{len(r.samples):,} lane-to-lane deliveries" + (f"; {r.missing} missing" if r.missing else ""))
            for r in results]


@click.command("site")
@click.option("--lanes", default="2,4,8", show_default=True, help="Comma-separated lane counts to measure.")
@click.option("--taps", default=60, show_default=True, type=click.IntRange(1, 10_000),
              help="Admissions per lane count and link state.")
@click.option("--every", "every_ms", default=100, show_default=True, type=click.IntRange(0, 10_000),
              help="Milliseconds between admissions (round-robin over the lanes).")
def site_command(lanes: str, taps: int, every_ms: int) -> None:
    """Lane-to-lane propagation at one site (p50/p99/max) for N lanes, with and without the city link."""
    counts = [int(x) for x in lanes.split(",") if x.strip()]
    if not counts or any(not 2 <= n <= 32 for n in counts):
        raise click.BadParameter("lane counts are 2..32", param_hint="--lanes")
    results = run_site(counts, taps, every_ms)
    print_rows("sibling lanes: commit at one lane → applied at every other (site broker, TLS, QoS 1)", rows(results))
    if any(r.missing for r in results):
        raise click.ClickException("some admissions never reached a sibling lane")
