"""``citypass bench city``: a compressed city day through the issuer's ingest path into PostgreSQL.

Method (every figure measured on this machine, against the PostgreSQL server given by ``--server``, in
databases this bench creates and drops):

1. **The day.** :class:`citypass.bench.cityday.CityDay` makes ``--taps`` taps with Hangzhou's shape (metro
   peaks morning and evening, bus all day, scenic afternoons, museum slots) from 564 gates, as their outbox
   rows, in each gate's batches of up to ``--batch`` rows (a gate with a backlog uploads 500 at a time). The
   rows are made and written to scratch files *before* anything is timed: making them is the gates' work.
2. **Ingest.** For each worker count in ``--workers``, a fresh database (migrated, the 564 devices
   registered), then that many worker processes, each with its own connection pool, take the day's batches
   and store each through :func:`citypass.issuer.ingest.ingest` — the code behind ``POST /v1/taps`` and the
   MQTT ingest workers (ids checked, bodies parsed, validated against the device's registration,
   ``store_batch`` in one transaction, committed with ``synchronous_commit`` as the server has it). The
   transport (HTTP or MQTT) is not in this figure: ``citypass bench sync`` and ``bench ingest`` measure it.
   The largest worker count ingests the whole day; smaller ones a ``--sample`` of it (same shape).
3. **Storage.** The database's growth over the whole day, per million taps, and the part of it that is
   the taps' day partitions, the events, the tap-id claims and the rollup.
4. **Reports** over the day in the database of the full run: the occupancy of every site hour by hour from the
   ``tap_hours`` rollup; the API's occupancy of the busiest scenic site (its quarter-hour tallies read, then
   :func:`~citypass.issuer.occupancy.occupancy_from_quarters`; and, for comparison, from its taps); incidents and
   journeys as the API computes them (the window's taps read, then :func:`~citypass.issuer.incidents.find_incidents`
   / :func:`~citypass.issuer.journeys.journeys`) for the evening peak hour — the whole day's 10 M taps would not fit
   the API's 1 M-tap report window — and the day's journeys counted in SQL (tap-in/tap-out pairs by a window
   function over the day's transit taps); then the day's journeys as ``/v1/journeys`` makes them now, from the legs
   kept at ingest (:func:`~citypass.issuer.journeys.window_journeys`).

Example::

    citypass bench city                                # 200,000 taps, 1, 2 and 4 workers: a quick look
    citypass bench city --full                         # 10,000,000 taps (4 workers), 1,000,000 for 1 and 2
"""

from __future__ import annotations

import multiprocessing
import pickle
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from citypass.bench.cityday import DAY, HOUR, CityDay, OutboxRow
from citypass.bench.report import Progress, Row, print_rows, scratch_dir

FULL_TAPS = 10_000_000
FULL_SAMPLE = 1_000_000
FILES = 4  # the day is written as this many files; W workers take files w, w + W, …
UTC_OFFSET_S = 8 * HOUR  # Hangzhou


def day_start(now: float) -> int:
    """Yesterday's local midnight (UTC+8): a whole day that has already happened."""
    local = int(now) + UTC_OFFSET_S
    return local - local % DAY - DAY - UTC_OFFSET_S


def write_day(day: CityDay, work: Path, batch: int, progress: Progress) -> list[Path]:
    """The day's batches, as pickled ``(device id, rows)`` records, in :data:`FILES` files (made in parallel)."""
    # v2: tap-outs flagged not_tapped_in; v3: refusals as a gate records them (no kind, no persons)
    paths = [work / f"day-{day.taps}-{day.seed}-v3-{k}.pickle" for k in range(FILES)]
    if all(p.exists() for p in paths):  # --rows-dir: made by an earlier run (same size, same seed)
        progress(f"reusing the rows of {day.taps:,} taps in {work}")
        return paths
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.starmap(_write_share, [(day.taps, day.day_start, day.seed, k, batch, str(p)) for k, p in enumerate(paths)])
    progress(f"made {day.taps:,} taps' rows in {time.perf_counter() - started:.0f} s "
             f"({sum(p.stat().st_size for p in paths) / 1e6:,.0f} MB of scratch files)")
    return paths


def _write_share(taps: int, start: int, seed: int, k: int, batch: int, path: str) -> None:
    day = CityDay(taps, start, seed)
    pending: dict[str, list[OutboxRow]] = defaultdict(list)
    with open(path, "wb") as out:
        def flush(device: str) -> None:
            pickle.dump((device, pending.pop(device)), out, protocol=pickle.HIGHEST_PROTOCOL)

        for unit in day.share(k, FILES):
            for device, row in day.rows(unit):
                pending[device].append(row)
                if len(pending[device]) >= batch:
                    flush(device)
        for device in list(pending):
            flush(device)


def _batches(paths: list[str]) -> Iterator[tuple[str, list[OutboxRow]]]:
    for path in paths:
        with open(path, "rb") as f:
            while True:
                try:
                    yield pickle.load(f)
                except EOFError:
                    break


def _waiting(paths: list[str], events: int) -> Iterator[list[tuple[str, list[OutboxRow]]]]:
    """The batches of ``paths`` as a busy worker's queue hands them over: as many as hold ``events`` events at a
    time (at least one batch; ``events`` 0: one batch at a time)."""
    waiting: list[tuple[str, list[OutboxRow]]] = []
    size = 0
    for device, rows in _batches(paths):
        if waiting and size + len(rows) > events:
            yield waiting
            waiting, size = [], 0
        waiting.append((device, rows))
        size += len(rows)
    if waiting:
        yield waiting


def _ingest_worker(url: str, paths: list[str], received_at: int, per_transaction: int, ready: Any, go: Any,
                   results: Any) -> None:
    """One ingest worker (a process): its own pool, the batches of its files, through ``ingest_many`` — the
    uploads waiting, up to ``per_transaction`` events, stored together, as the MQTT ingest worker does."""
    from citypass.issuer.ingest import Upload, ingest_many
    from citypass.issuer.postgres.store import PostgresStore

    store = PostgresStore(url, pool_max=2)
    stored = events = transactions = 0
    try:
        ready.release()
        go.wait()
        started = time.perf_counter()
        for waiting in _waiting(paths, per_transaction):
            outcomes = ingest_many(store, [Upload(device, rows) for device, rows in waiting], received_at,
                                   max_events=max(per_transaction, 1))
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome
                stored += outcome.new_taps
            events += sum(len(rows) for _, rows in waiting)
            transactions += 1
        results.put((stored, events, time.perf_counter() - started, transactions))
    finally:
        store.close()


def prepare_database(server: str, day: CityDay) -> str:
    """A fresh database, migrated, with the day's gates registered; its URL."""
    from citypass.issuer.postgres.admin import create_database
    from citypass.issuer.postgres.store import PostgresStore
    from citypass.issuer.records import Device

    url = create_database(server, prefix="citypass_bench")
    store = PostgresStore(url)
    try:
        for gate in day.gates():
            store.add_device(Device(gate.id, gate.site, gate.direction, "bench city", "enrolled", day.day_start))
    finally:
        store.close()
    return url


def run_ingest(url: str, paths: list[Path], workers: int, received_at: int,
               per_transaction: int = 0) -> tuple[int, int, float, int]:
    """(taps stored, events, wall seconds, transactions) with ``workers`` worker processes over the files
    ``paths``, storing up to ``per_transaction`` events of waiting uploads together (0: one upload at a time)."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_ingest_worker, args=(url, [str(p) for p in paths[w::workers]], received_at,
                                                       per_transaction, ready, go, results)) for w in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=120):
            raise RuntimeError("an ingest worker did not start")
    started = time.perf_counter()
    go.set()
    outcome = [results.get(timeout=4 * 3600) for _ in procs]
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise RuntimeError(f"ingest worker exited with {p.exitcode}")
    return sum(o[0] for o in outcome), sum(o[1] for o in outcome), elapsed, sum(o[3] for o in outcome)


def storage_rows(store: Any, taps: int, grown: int) -> list[Row]:
    parts = dict(store.fetchall(
        "SELECT CASE WHEN c.relname LIKE 'taps_%%' THEN 'taps (day partitions)' ELSE c.relname END,"
        " sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relkind = 'r' AND (c.relname LIKE 'taps_%%'"
        " OR c.relname IN ('tap_events', 'tap_ids', 'tap_hours')) GROUP BY 1"))
    per_million = grown / max(taps, 1) * 1e6
    detail = ", ".join(f"{name} {int(size) / max(taps, 1) * 1e6 / 1e6:,.0f}" for name, size in sorted(parts.items()))
    return [Row("storage per million taps", f"{per_million / 1e6:,.0f} MB",
                f"database growth over the day ({grown / 1e9:.1f} GB for {taps:,} taps); MB per million: {detail}")]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def report_rows(store: Any, day: CityDay) -> list[Row]:
    from citypass.issuer.incidents import find_incidents
    from citypass.issuer.journeys import FareTable, journeys, window_journeys
    from citypass.issuer.occupancy import occupancy, occupancy_from_quarters

    start, end = day.day_start, day.day_start + DAY
    rows = []

    def rollup_occupancy() -> int:
        hours = store.fetchall(
            "SELECT site, hour, sum(CASE WHEN direction = 'entry' THEN persons - annulled ELSE 0 END),"
            " sum(CASE WHEN direction = 'exit' THEN persons - annulled ELSE 0 END) FROM tap_hours"
            " WHERE decision = 'allow' AND hour >= %s AND hour < %s GROUP BY site, hour ORDER BY site, hour",
            [start, end])
        inside: dict[int, int] = defaultdict(int)
        for site, _hour, entries, exits in hours:  # hour by hour, never below zero
            inside[site] = max(0, inside[site] + int(entries) - int(exits))
        return len(hours)

    points, took = _timed(rollup_occupancy)
    rows.append(Row("occupancy, every site, the day (tap_hours)", f"{took * 1e3:,.0f} ms",
                    f"{points:,} site-hours from the hourly rollup kept at ingest"))
    tallies, took = _timed(lambda: store.quarter_tallies(start, end))
    rows.append(Row("occupancy, every site, the day (site_quarters)", f"{took * 1e3:,.0f} ms",
                    f"{len(tallies):,} site-quarters, the console's tallies recounted at ingest"))
    stored, took = _timed(lambda: store.stored_incidents(since=start, until=end, limit=10_000_000))
    kinds = sorted({i.incident.kind for i in stored})
    rows.append(Row("incidents, the day (kept at ingest)", f"{took * 1e3:,.0f} ms",
                    f"{len(stored):,} incidents read ({', '.join(kinds) or 'none'}): what /v1/incidents serves"))
    scenic, took = _timed(lambda: occupancy_from_quarters(store.quarter_tallies(start - DAY, end, site=1), 1,
                                                          end - 1, hours=24))
    rows.append(Row("occupancy of the busiest scenic site (API path)", f"{took * 1e3:,.0f} ms",
                    f"/v1/sites/{{id}}/occupancy: its quarter-hour tallies read and counted; "
                    f"{scenic.entries_today:,} entries"))
    old, took = _timed(lambda: occupancy(store.taps(site=1, since=start, until=end, limit=2_000_000), 1,
                                         end - 1, hours=24))
    rows.append(Row("occupancy of the busiest scenic site from its taps", f"{took * 1e3:,.0f} ms",
                    f"its day's taps read and counted (the API's way before); {old.entries_today:,} entries"))
    peak = start + 18 * HOUR
    taps, read_s = _timed(lambda: store.taps(since=peak, until=peak + HOUR, limit=2_000_000))
    found, find_s = _timed(lambda: find_incidents(taps, lambda _cid: None))
    rows.append(Row("incidents, evening peak hour, recomputed", f"{read_s + find_s:,.1f} s",
                    f"{len(taps):,} taps read in {read_s:.1f} s + {find_s:.1f} s to find {len(found):,} incidents; "
                    f"the day ≈ {(read_s + find_s) * day.taps / max(len(taps), 1):,.0f} s"))
    fares = FareTable.from_dict({"default_fare": 200})
    made, pair_s = _timed(lambda: journeys(taps, fares, now=end))
    rows.append(Row("journeys, evening peak hour, paired from its taps", f"{read_s + pair_s:,.1f} s",
                    f"{len(made):,} journeys paired in {pair_s:.1f} s after the {read_s:.1f} s read (the API's way "
                    "before journeys were kept)"))
    page, page_s = _timed(lambda: window_journeys(
        store.journey_legs(start, end, max_journey_s=4 * HOUR, limit=10_000), fares, since=start, until=end,
        now=end, max_journey_s=4 * HOUR))
    rows.append(Row("journeys, the day, /v1/journeys (kept at ingest)", f"{page_s * 1e3:,.0f} ms",
                    f"the report's first {len(page):,} journeys (its largest page) read from the journeys table in "
                    "order and priced"))
    shapes, shapes_s = _timed(lambda: store.fetchall(
        "SELECT shape, count(*) FROM journeys WHERE at >= %s AND at < %s GROUP BY 1 ORDER BY 1", [start, end]))
    rows.append(Row("journeys, the day, counted (kept at ingest)", f"{shapes_s:,.1f} s",
                    ", ".join(f"{int(n):,} {shape}" for shape, n in shapes) + " (legs of the journeys table)"))
    everything, all_s = _timed(lambda: window_journeys(
        store.journey_legs(start, end, max_journey_s=4 * HOUR), fares, since=start, until=end, now=end,
        max_journey_s=4 * HOUR))
    rows.append(Row("journeys, the day, every one priced in Python", f"{all_s:,.1f} s",
                    f"{len(everything):,} journeys from the kept legs (what a full export costs; the API pages)"))
    counted, took = _timed(lambda: store.scalar(
        "SELECT count(*) FROM (SELECT kind, lead(kind) OVER w AS next_kind, lead(at) OVER w - at AS gap"
        " FROM taps WHERE at >= %s AND at < %s AND product = 3 AND decision = 'allow' AND kind IN ('tap_in',"
        " 'tap_out') WINDOW w AS (PARTITION BY credential_id ORDER BY at, tap_id)) j"
        " WHERE kind = 'tap_in' AND next_kind = 'tap_out' AND gap < 14400", [start, end]))
    rows.append(Row("journeys, the day, counted in SQL", f"{took:,.1f} s",
                    f"{int(counted):,} metro journeys (window function over the day's transit taps)"))
    return rows


def run_city_bench(taps: int, workers: list[int], sample: int, server: str, batch: int, work: Path,
                   progress: Progress, keep: bool = False, per_transaction: int = 0) -> list[Row]:
    from citypass.issuer.postgres.admin import drop_database
    from citypass.issuer.postgres.store import PostgresStore

    start = day_start(time.time())
    received_at = start + DAY + HOUR
    days = {taps: CityDay(taps, start)}
    if min(workers) < max(workers) and sample < taps:
        days[sample] = CityDay(sample, start)
    files = {n: write_day(day, work, batch, progress) for n, day in days.items()}
    rows: list[Row] = []
    full_url = None
    for count in sorted(workers):
        n = taps if count == max(workers) else min(sample, taps)
        url = prepare_database(server, days[n])
        store = PostgresStore(url, pool_max=2)
        before = int(store.scalar("SELECT pg_database_size(current_database())"))
        stored, events, elapsed, transactions = run_ingest(url, files[n], count, received_at, per_transaction)
        progress(f"{count} worker(s): {stored:,} taps ({events:,} events) in {elapsed:.0f} s")
        together = (f"uploads waiting stored together, ≤ {per_transaction:,} events a transaction"
                    if per_transaction else "one upload a transaction")
        rows.append(Row(f"ingest, {count} worker(s)", f"{stored / elapsed:,.0f} taps/s",
                        f"{stored:,} taps + annulments, gate batches of ≤ {batch}; {together} ({transactions:,}, "
                        f"{events / max(transactions, 1):,.0f} events each); {elapsed:.0f} s"))
        if count == max(workers):
            with store.connection() as conn:
                conn.execute("ANALYZE")
            grown = int(store.scalar("SELECT pg_database_size(current_database())")) - before
            rows += storage_rows(store, stored, grown)
            rows += report_rows(store, days[n])
            full_url = url
        store.close()
        if not keep or url != full_url:
            drop_database(url, server)
    if keep and full_url:
        progress(f"kept the full day's database: {full_url}")
    return rows


@click.command("city")
@click.option("--taps", type=click.IntRange(min=1000), default=200_000, show_default=True,
              help="Taps in the day (the largest worker count ingests all of them).")
@click.option("--full", is_flag=True, help=f"The issue's size: {FULL_TAPS:,} taps, a {FULL_SAMPLE:,}-tap sample for "
                                           "the smaller worker counts.")
@click.option("--workers", default="1,2,4", show_default=True, help="Worker counts to measure, comma-separated.")
@click.option("--sample", type=click.IntRange(min=1000), default=None,
              help="Taps for the smaller worker counts (default: all of --taps; with --full 1,000,000).")
@click.option("--batch", type=click.IntRange(1, 500), default=500, show_default=True,
              help="Most rows per gate batch (a gate with a backlog uploads 500).")
@click.option("--server", default=None, metavar="URL",
              help="PostgreSQL server (its maintenance database); the bench creates and drops its own databases. "
                   "Default: postgresql://postgres@127.0.0.1:5432/postgres.")
@click.option("--per-transaction", type=click.IntRange(0, 20_000), default=2000, show_default=True,
              help="Events of the uploads waiting at a worker stored in one transaction, as the MQTT ingest workers "
                   "do under load (0: one upload a transaction).")
@click.option("--keep", is_flag=True, help="Keep the full day's database (its URL is printed).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Scratch files here (default: a new temporary directory; ~0.45 GB per million taps).")
@click.option("--rows-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the day's rows here and reuse them in a later run of the same size (not deleted).")
def city_command(taps: int, full: bool, workers: str, sample: int | None, batch: int, server: str | None,
                 per_transaction: int, keep: bool, directory: Path | None, rows_dir: Path | None) -> None:
    """Issuer at city scale: a day of Hangzhou-shaped taps ingested into PostgreSQL with 1, 2, 4 workers;
    storage per million taps; the day's reports."""
    from rich.console import Console

    from citypass.issuer.postgres.admin import DEFAULT_SERVER, reachable

    console = Console()
    counts = sorted({int(w) for w in workers.split(",") if w.strip()})
    if not counts or min(counts) < 1 or max(counts) > 16:
        raise click.BadParameter("give 1..16 workers, e.g. 1,2,4", param_hint="--workers")
    if full:
        taps, sample = FULL_TAPS, sample or FULL_SAMPLE
    server = server or DEFAULT_SERVER
    problem = reachable(server)
    if problem:
        raise click.ClickException(problem)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    with scratch_dir("citypass-bench-city-", directory) as work:
        if rows_dir is not None:
            rows_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        rows = run_city_bench(taps, counts, sample or taps, server, batch, rows_dir or work,
                              lambda msg: console.log(msg, highlight=False), keep, per_transaction)
        elapsed = time.perf_counter() - started
    after = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print_rows(f"A city day on PostgreSQL — {taps:,} taps; {elapsed:.0f} s in all; load {' '.join(load)} before, "
               f"{' '.join(after)} after", rows, console)
