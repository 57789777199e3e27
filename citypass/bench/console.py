"""``citypass bench console``: the operators' console over a simulated city day.

Method (every figure measured on this machine, real SQLite with ``synchronous=FULL`` in a temporary directory):

1. **A city day in the store** (:mod:`citypass.issuer.console.sample`): ``--sites`` sites with two gates each,
   ``--groups`` tour groups registered with 2–3 stops (their passes signed), ``--taps`` taps over the day so
   far — visits, metro rides, group admissions, refusals — taken in through ``ingest()`` (validation, the
   stored batch, and the control room's upkeep: incidents, quarter-hour tallies, group positions) in batches
   of 500: taps/s with all of that included.
2. **Pages.** The issuer served by uvicorn in a child process (request limits off), an operator logged in
   through the login form; each page fetched ``--samples`` times in turn: p50/p95/max.
3. **Live stream.** A browser-like client holds ``/console/live/stream`` open while this process ingests taps
   at ``--rate`` per second (batches every 100 ms, as gates' uploads arrive) for ``--seconds``: the share of
   ingested taps the stream delivered, and the delay from a batch's commit to each of its taps' arrival.

Example::

    citypass bench console                    # 200,000 taps, 1,000 groups, 150 sites
    citypass bench console --full             # 1,000,000 taps (about 10 minutes on 2 cores)
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import closing

import click
import httpx

from citypass.bench.ingest import ServedIssuer
from citypass.bench.machine import load_average
from citypass.bench.report import Row, percentile, print_rows, scratch_dir
from citypass.issuer.console import sample
from citypass.issuer.home import IssuerHome
from citypass.issuer.records import TapEvent
from citypass.issuer.service import Issuer
from citypass.issuer.tokens import create_token

PAGES = ("city", "live", "incidents", "devices", "passes?q={credential}", "venues", "groups",
         "groups/{group}", "groups?site={site}")


def login(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', client.get("/console/login").text)
    assert nonce is not None
    answer = client.post("/console/login", data={"nonce": nonce.group(1), "token": token})
    assert answer.status_code == 303, answer.text[:300]
    return client


def bench_pages(client: httpx.Client, samples: int, fill: dict[str, str]) -> list[Row]:
    rows = []
    for page in PAGES:
        path = "/console/" + page.format(**fill)
        times = []
        size = 0
        for _ in range(samples):
            t0 = time.perf_counter()
            answer = client.get(path)
            times.append(time.perf_counter() - t0)
            assert answer.status_code == 200, (path, answer.status_code)
            size = len(answer.content)
        rows.append(Row(f"page /console/{page.split('?')[0]}" + ("?…" if "?" in page else ""),
                        f"p95 {percentile(times, 0.95) * 1e3:.0f} ms",
                        f"p50 {percentile(times, 0.5) * 1e3:.0f} ms, max {max(times) * 1e3:.0f} ms, "
                        f"{size / 1024:.0f} KiB, {samples} requests"))
    return rows


def bench_stream(issuer: Issuer, client: httpx.Client, rate: int, seconds: float) -> list[Row]:
    """Ingest at ``rate`` taps/s while the live stream is read; delivery and delay."""
    arrived: dict[str, float] = {}
    opened = threading.Event()
    stop = threading.Event()

    def read() -> None:
        with client.stream("GET", "/console/live/stream", timeout=None) as answer:
            opened.set()
            for line in answer.iter_lines():
                if line.startswith("id: "):
                    arrived[line[4:]] = time.monotonic()
                if stop.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    opened.wait(10)
    time.sleep(0.5)
    sites = [s for s in issuer.store.sites() if s.kind.value != "metro"]
    committed: dict[str, float] = {}
    per_batch = max(1, rate // 10)
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        tick = started + (n // per_batch + 1) * 0.1
        now = int(time.time())
        batch = []
        for _ in range(per_batch):
            site = sites[n % len(sites)]
            tap_id = f"bench-live-{n:08d}"
            batch.append(TapEvent(f"{tap_id}-e", tap_id, "tap", {
                "gate_id": f"{site.name}-in", "site": site.number, "direction": "entry", "decision": "allow",
                "reason": None, "flags": [], "credential_id": f"{0xbe00000000 + n:016x}", "product": 1, "persons": 1,
                "kind": "entry", "presentation_id": None, "at": now}, now))
            n += 1
        sample.ingest_all(issuer, iter(batch), lambda e: int(time.time()))
        done = time.monotonic()
        for event in batch:
            committed[event.tap_id] = done
        time.sleep(max(0.0, tick - time.monotonic()))
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(set(committed) & set(arrived)) < len(committed):
        time.sleep(0.05)
    stop.set()
    delays = [arrived[t] - committed[t] for t in committed if t in arrived]
    got = len(delays)
    return [
        Row("ingest during the stream", f"{len(committed) / elapsed:,.0f} taps/s",
            f"{len(committed):,} taps in {elapsed:.1f} s, batches of {per_batch} every 100 ms (target {rate}/s)"),
        Row("live stream delivered", f"{got:,} of {len(committed):,}", "taps ingested while the stream was open"),
        Row("  commit → browser", f"p95 {percentile(delays, 0.95) * 1e3:.0f} ms" if delays else "—",
            f"p50 {percentile(delays, 0.5) * 1e3:.0f} ms, max {max(delays) * 1e3:.0f} ms" if delays else ""),
    ]


def run(taps: int, groups: int, sites: int, samples: int, rate: int, seconds: float) -> list[Row]:
    rows = []
    load_before = load_average()
    with scratch_dir("citypass-bench-console-") as work:
        now = int(time.time())
        issuer = Issuer.init(IssuerHome(work / "issuer"), [], now=now - 4 * 86_400)
        try:
            t0 = time.perf_counter()

            def progress(stored: int) -> None:
                if stored % 100_000 < sample.BATCH:
                    click.echo(f"  … {stored:,} taps in {time.perf_counter() - t0:.0f} s", err=True)

            city = sample.populate(issuer, now=now, sites=sites, taps=taps, groups=groups, progress=progress)
            rows.append(Row("city day ingested", f"{city.taps / city.ingest_seconds:,.0f} taps/s",
                            f"{city.taps:,} taps, {groups:,} groups, {sites} sites, {len(city.gates)} gates; "
                            "validation + store + incidents, tallies, groups; one process"))
            rows.append(Row("  what ingest kept", f"{issuer.store.open_incident_count():,} open incidents",
                            f"{len(issuer.store.quarter_tallies(0, now + 1)):,} quarter tallies"))
            token = create_token(issuer.store, "operator", now, label="bench console").text
            group = city.groups[0]
            inside = issuer.store.groups(inside=True, limit=1)
            site = str(inside[0].last_site) if inside else "1"
            credential = next(s.credential_id for s in issuer.store.group(group).stops if s.credential_id)
            with ServedIssuer(work / "issuer") as served, closing(login(served.url, token)) as client:
                rows += bench_pages(client, samples, {"credential": credential, "group": group, "site": site})
                rows += bench_stream(issuer, client, rate, seconds)
        finally:
            issuer.close()
    rows.append(Row("machine load", f"{load_before} → {load_average()}", "before → after"))
    return rows


@click.command("console")
@click.option("--taps", type=click.IntRange(1000, 10_000_000), default=200_000, show_default=True)
@click.option("--full", is_flag=True, help="The issue's size: 1,000,000 taps (overrides --taps).")
@click.option("--groups", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--sites", type=click.IntRange(4, 1000), default=150, show_default=True)
@click.option("--samples", type=click.IntRange(3, 1000), default=20, show_default=True, help="Requests per page.")
@click.option("--rate", type=click.IntRange(10, 100_000), default=2000, show_default=True,
              help="Taps per second ingested while the live stream is read.")
@click.option("--seconds", type=click.FloatRange(1, 600), default=10.0, show_default=True)
def console_command(taps: int, full: bool, groups: int, sites: int, samples: int, rate: int, seconds: float) -> None:
    """The console's pages and live stream over a simulated city day (see the module docstring)."""
    rows = run(1_000_000 if full else taps, groups, sites, samples, rate, seconds)
    print_rows("citypass bench console", rows)
