"""``citypass bench ingest``: the issuer taking in taps, and answering reservations under load.

Method (every figure is measured on this machine, on real SQLite files in a temporary directory that
is deleted afterwards, with ``synchronous=FULL``: an acknowledged tap is on disk):

1. **Repository.** N synthetic taps shaped exactly like a gate's outbox rows (``tap`` events whose body
   is ``Tap.event_fields()``; one in ten followed by an ``annul``) are validated
   (:func:`citypass.issuer.ingest.prepare`) and stored (``IssuerStore.store_batch``) in batches of 500, in this
   process pinned to one core: taps/s, and the time of one batch (p50/p99).
2. **HTTP.** The same taps (new ids) POSTed to ``/v1/taps`` of a served issuer — uvicorn in a separate
   process pinned to one core, so the figure is the server's and not the client's — one batch at a
   time as one gate's sync does, then from 4 concurrent uploaders as a fleet does. Bodies are sent as
   the JSON text the outbox holds, so the server parses them as it would in production.
3. **Reservations.** 8 concurrent clients, each with its own connection, POST ``/v1/reservations``
   (party 1) against one slot, back to back: latency per request p50/p99/max and requests/s. Every
   request takes the database's write lock (``BEGIN IMMEDIATE``) to check and book, then signs a code.

Example::

    citypass bench ingest                              # 100,000 taps, 8 × 100 reservations
    citypass bench ingest --taps 20000 --reservations 50
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

import click
import httpx

from citypass.bench.report import Row, percentile, print_rows, scratch_dir
from citypass.issuer.api.limits import RateLimits
from citypass.issuer.home import IssuerHome
from citypass.issuer.ingest import Uploader, prepare
from citypass.issuer.records import Device, Slot, TapEvent
from citypass.issuer.service import Issuer
from citypass.issuer.store import IssuerStore
from citypass.issuer.tokens import create_token

NOW = 1_800_000_000
BATCH = 500
SITES = [("west-lake", "scenic"), ("zhejiang-museum", "museum"), ("metro-a", "metro")]


def synthetic_events(count: int, gate_id: str, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` taps (plus an annulment for every tenth) as a gate's outbox rows: event_id, tap_id,
    kind, body (JSON text, byte for byte what ``citypass.gate.ledger.outbox.add_event`` writes), created_at."""
    rows: list[dict[str, Any]] = []
    for i in range(count):
        tap_id = str(uuid.UUID(int=(seed << 96) | (i << 1)))
        at = NOW + i // 10
        fields = {"gate_id": gate_id, "site": 1, "direction": "entry", "decision": "allow", "reason": None,
                  "flags": [], "credential_id": f"{(seed << 40) + i:016x}", "product": 1, "persons": 1,
                  "kind": "entry", "presentation_id": None, "at": at,
                  "stages": {"captured": at - 0.02, "decoded": at - 0.01, "decided": float(at)}}
        event_id = str(uuid.UUID(int=(seed << 96) | (i << 1) | 1))
        rows.append(_row(event_id, tap_id, "tap", fields, at))
        if i % 10 == 9:
            rows.append(_row(f"{event_id}-annul", tap_id, "annul", {"persons_unused": 1, "at": at + 5}, at + 5))
    return rows


def _row(event_id: str, tap_id: str, kind: str, fields: dict[str, Any], at: int) -> dict[str, Any]:
    body = json.dumps({"event_id": event_id, "kind": kind, "tap_id": tap_id, **fields}, separators=(",", ":"),
                      sort_keys=True)
    return {"event_id": event_id, "tap_id": tap_id, "kind": kind, "body": body, "created_at": at}


def batches(rows: list[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def pin_to_one_core(cpu: int | None = None) -> str:
    """Pin this process to one CPU (the first allowed one by default); say which, or why not."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[0] if cpu is None or cpu not in allowed else cpu
    os.sched_setaffinity(0, {chosen})
    return f"pinned to CPU {chosen}"


def bench_repository(path: Path, taps: int) -> list[Row]:
    rows = synthetic_events(taps, "bench-gate", seed=1)
    store = IssuerStore(path)
    times: list[float] = []
    started = time.perf_counter()
    try:
        for chunk in batches(rows):
            t0 = time.perf_counter()
            events = [TapEvent(r["event_id"], r["tap_id"], r["kind"], json.loads(r["body"]), r["created_at"])
                      for r in chunk]
            store.store_batch(prepare(events, Uploader("bench-gate", 1, "entry")), "bench-gate", NOW)
            times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        stored = store.tap_count()
    finally:
        store.close()
    assert stored == taps, f"stored {stored} of {taps} taps"
    return [
        Row("ingest via repository", f"{taps / elapsed:,.0f} taps/s",
            f"{taps:,} taps + {taps // 10:,} annulments, batches of {BATCH}, one core"),
        Row("  one batch (repository)", f"p50 {percentile(times, 0.5) * 1e3:.1f} ms, "
                                        f"p99 {percentile(times, 0.99) * 1e3:.1f} ms", "validate + one transaction"),
    ]


def serve_home(home: str, sock_fd: int, cpu: int | None, limits: RateLimits | None) -> None:
    """The served issuer, in its own process, pinned to one core (multiprocessing target)."""
    import socket

    import uvicorn

    from citypass.issuer.api import create_app

    pin_to_one_core(cpu)
    sock = socket.socket(fileno=sock_fd)
    issuer = Issuer.open(IssuerHome(Path(home)))
    # Ingest and reservations are measured without the request limits (what the service can do, not its per-token
    # policy); /healthz under report load is measured with and without them.
    config = uvicorn.Config(create_app(issuer, limits=limits), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


class ServedIssuer:
    """The issuer of the home at ``path`` served by uvicorn in a forked child process (pinned to ``cpu`` when given)
    on a socket bound here; ``with`` waits until it answers ``/healthz`` and stops it afterwards."""

    def __init__(self, path: Path, cpu: int | None = None, limits: RateLimits | None = None) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.sock.set_inheritable(True)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        context = multiprocessing.get_context("fork")  # the child inherits the bound socket
        self.process = context.Process(target=serve_home, args=(str(path), self.sock.fileno(), cpu, limits),
                                       daemon=True)

    def __enter__(self) -> Self:
        self.process.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("the issuer did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.join(10)
        self.sock.close()


class ServedHome(ServedIssuer):
    """An issuer home with a device, a slot and an admin token, served from a pinned child process. ``fresh=False``
    serves a home made before (with a new token), e.g. with other ``limits``."""

    def __init__(self, path: Path, capacity: int, cpu: int | None, *, limits: RateLimits | None = None,
                 fresh: bool = True) -> None:
        if fresh:
            issuer = Issuer.init(IssuerHome(path), SITES, now=NOW)
            issuer.store.add_device(Device("bench-gate", 1, "entry", "bench", "registered", NOW))
            for n in range(4):
                issuer.store.add_device(Device(f"bench-gate-{n}", 1, "entry", "bench", "registered", NOW))
            issuer.store.add_slot(Slot("s_000000000001", 2, 2_000_000_000, 2_000_003_600, capacity, 0, NOW))
        else:
            issuer = Issuer.open(IssuerHome(path))
        self.slot_id = "s_000000000001"
        self.token = create_token(issuer.store, "admin", NOW, label="bench").text
        issuer.close()
        super().__init__(path, cpu, limits)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)


def bench_http(served: ServedHome, taps: int, uploaders: int = 4) -> list[Row]:
    out: list[Row] = []
    for clients, seed in ((1, 2), (uploaders, 3)):
        per_client = taps // clients
        names = ["bench-gate"] if clients == 1 else [f"bench-gate-{n}" for n in range(clients)]
        work = [(name, synthetic_events(per_client, name, seed=seed * 16 + n)) for n, name in enumerate(names)]
        times: list[float] = []
        lock = threading.Lock()

        def upload(job: tuple[str, list[dict[str, Any]]], times: list[float] = times,
                   lock: threading.Lock = lock) -> int:
            device, rows = job
            new = 0
            with served.client() as client:
                for chunk in batches(rows):
                    t0 = time.perf_counter()
                    response = client.post("/v1/taps", json={"device_id": device, "events": chunk})
                    elapsed = time.perf_counter() - t0
                    response.raise_for_status()
                    new += int(response.json()["new_taps"])
                    with lock:
                        times.append(elapsed)
            return new

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            stored = sum(pool.map(upload, work))
        elapsed = time.perf_counter() - started
        assert stored == per_client * clients, f"stored {stored} of {per_client * clients}"
        who = "one uploader" if clients == 1 else f"{clients} concurrent uploaders"
        out.append(Row(f"ingest via HTTP, {who}", f"{stored / elapsed:,.0f} taps/s",
                       f"POST /v1/taps, batches of {BATCH}, server on one core"))
        out.append(Row(f"  one batch (HTTP, {who})", f"p50 {percentile(times, 0.5) * 1e3:.1f} ms, "
                                                     f"p99 {percentile(times, 0.99) * 1e3:.1f} ms", ""))
    return out


def bench_reservations(served: ServedHome, clients: int, per_client: int) -> list[Row]:
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def run(_: int) -> int:
        ok = 0
        with served.client() as client:
            client.get("/healthz")  # connect before the clock starts
            start.wait()
            for _ in range(per_client):
                t0 = time.perf_counter()
                response = client.post("/v1/reservations", json={"slot_id": served.slot_id, "party": 1})
                elapsed = time.perf_counter() - t0
                ok += response.status_code == 201
                with lock:
                    latencies.append(elapsed)
        return ok

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ok = sum(pool.map(run, range(clients)))
    elapsed = time.perf_counter() - started
    assert ok == clients * per_client, f"{ok} of {clients * per_client} reservations succeeded"
    ms = [t * 1e3 for t in latencies]
    return [
        Row(f"reservation, {clients} concurrent clients",
            f"p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms",
            f"{len(ms)} requests, {len(ms) / elapsed:,.0f}/s; check-and-book + sign"),
    ]


def bench_healthz(served: ServedHome, label: str, report_clients: int = 12, seconds: float = 4.0) -> list[Row]:
    """``/healthz`` latency alone, then while ``report_clients`` clients keep asking for the incident report over
    the window of every tap ingested (each reads all of them)."""

    def probe(n: int) -> list[float]:
        out = []
        with httpx.Client(base_url=served.url, timeout=30) as client:
            for _ in range(n):
                t0 = time.perf_counter()
                client.get("/healthz").raise_for_status()
                out.append((time.perf_counter() - t0) * 1e3)
                time.sleep(0.01)
        return out

    idle = probe(100)
    stop = threading.Event()
    answered: dict[int, int] = {}
    lock = threading.Lock()

    def ask(_: int) -> None:
        with served.client() as client:
            while not stop.is_set():
                status = client.get("/v1/incidents", params={"since": NOW - 3600, "until": NOW + 3600}).status_code
                with lock:
                    answered[status] = answered.get(status, 0) + 1
                if status in (429, 503):
                    time.sleep(0.2)

    with ThreadPoolExecutor(report_clients) as pool:
        futures = [pool.submit(ask, n) for n in range(report_clients)]
        time.sleep(0.5)  # the reports are running
        loaded = probe(max(20, int(seconds / 0.02)))
        stop.set()
        for future in futures:
            future.result()
    counts = ", ".join(f"{n} × {status}" for status, n in sorted(answered.items()))
    return [
        Row("/healthz, idle", f"p50 {percentile(idle, 0.5):.1f} ms, p99 {percentile(idle, 0.99):.1f} ms", ""),
        Row(f"/healthz, {report_clients} clients asking for reports ({label})",
            f"p50 {percentile(loaded, 0.5):.1f} ms, p99 {percentile(loaded, 0.99):.1f} ms",
            f"report answers: {counts}"),
    ]


def run_ingest_bench(taps: int, clients: int, per_client: int, directory: Path,
                     log: Callable[[str], None] = lambda _: None) -> list[Row]:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpu = cpus[0] if cpus else None
    rows: list[Row] = []
    log(f"repository: {taps:,} taps in batches of {BATCH}")
    original = os.sched_getaffinity(0) if cpus else None
    note = pin_to_one_core(server_cpu)
    try:
        rows += bench_repository(directory / "repository.db", taps)
    finally:
        if original is not None:
            os.sched_setaffinity(0, original)
    rows[0] = Row(rows[0].measurement, rows[0].result, f"{rows[0].note} ({note})")
    # The clients run on the other cores (when there are any), the server alone on its own.
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus[1:]))
    try:
        with ServedHome(directory / "served", clients * per_client, server_cpu) as served:
            log(f"HTTP: {taps:,} taps to {served.url}")
            rows += bench_http(served, taps)
            log(f"reservations: {clients} clients × {per_client}")
            rows += bench_reservations(served, clients, per_client)
            log("/healthz under report load, no request limits")
            rows += bench_healthz(served, "no request limits")[1:]
        # The shipped limits, except that the per-token report rate does not throttle the 12 clients first:
        # what is measured is the admission of report computations (a few at once, a short queue, then 503).
        shipped = RateLimits(reports_per_token=1000.0, reports_burst=1000, reports_per_address=1000.0,
                             reports_per_address_burst=1000)
        with ServedHome(directory / "served", 0, server_cpu, limits=shipped, fresh=False) as limited:
            log("/healthz under report load, the shipped admission limit")
            rows += bench_healthz(limited, f"{shipped.report_slots} computed at once, {shipped.report_queue} queued")
    finally:
        if original is not None:
            os.sched_setaffinity(0, original)
    return rows


@click.command("ingest")
@click.option("--taps", type=click.IntRange(min=BATCH), default=100_000, show_default=True,
              help="Taps ingested per measurement (batches of 500).")
@click.option("--clients", type=click.IntRange(min=1, max=64), default=8, show_default=True,
              help="Concurrent reservation clients.")
@click.option("--reservations", "per_client", type=click.IntRange(min=1), default=100, show_default=True,
              help="Reservation requests per client.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Work here (default: a new temporary directory). It is deleted afterwards.")
def ingest_command(taps: int, clients: int, per_client: int, directory: Path | None) -> None:
    """Issuer: taps/s ingested (repository and HTTP, batches of 500) and reservation p99 under load."""
    from rich.console import Console

    console = Console()
    with scratch_dir("citypass-bench-ingest-", directory) as work:
        started = time.perf_counter()
        rows = run_ingest_bench(taps, clients, per_client, work, lambda msg: console.log(msg, highlight=False))
        elapsed = time.perf_counter() - started
    title = f"Issuer ingest and reservations (SQLite, WAL, synchronous=FULL) — {elapsed:.0f} s in all"
    print_rows(title, rows, console)
