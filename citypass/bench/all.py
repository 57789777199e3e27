"""``citypass bench all``: every benchmark in one process run, written to ``docs/benchmarks.md``.

Runs, one after another in this process, the decode, video, verify, gate, ledger (10 million revocations),
ingest, sync, sibling-lane (site) and hook start-up benchmarks through their ``run_*`` functions, measures the QR
version of freshly minted codes, and writes a Markdown report (:mod:`citypass.bench.markdown`): the date, the machine
(:mod:`citypass.bench.machine`), every figure with the exact command that reproduces it, the ratios against the same
run's baselines, and a summary table against the brief's numbers whose met / missed verdicts are computed from the
figures (:mod:`citypass.bench.verdicts`).

``--quick`` uses small sizes everywhere (for tests); its figures are not the brief's scale, and the
summary says so. The sizes, the collected results and the reproducing commands are in :mod:`citypass.bench.results`.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console

from citypass.bench import console as console_bench
from citypass.bench import decode as decode_bench
from citypass.bench import decode_figures
from citypass.bench import gate as gate_bench
from citypass.bench import ingest as ingest_bench
from citypass.bench import ledger as ledger_bench
from citypass.bench import site as site_bench
from citypass.bench import startup as startup_bench
from citypass.bench import sync as sync_bench
from citypass.bench import verify as verify_bench
from citypass.bench import video as video_bench
from citypass.bench.handsections import keep_hand_sections
from citypass.bench.machine import Machine, load_average
from citypass.bench.markdown import render
from citypass.bench.report import Row, scratch_dir
from citypass.bench.results import FULL, QUICK, Results, Sizes, size_label, sizes_label
from citypass.bench.verdicts import summary
from citypass.gate.decoders import DECODER_NAMES

T = TypeVar("T")


def qr_versions() -> dict[str, tuple[int, int]]:
    """Mint an 18-site annual pass (static) and a holder-bound one shown as a dynamic presentation."""
    from citypass.credential import qr
    from citypass.credential.claims import Annual, Credential, HolderKey
    from citypass.credential.codes import issue, present
    from citypass.credential.keys import SigningKey

    now = verify_bench.NOW
    issuer, holder = SigningKey.generate(), SigningKey.generate()
    sites = frozenset(range(1, 19))
    static = issue(Credential(os.urandom(8), Annual(sites, 30), now - 86_400, now + 365 * 86_400), issuer)
    bound = issue(Credential(os.urandom(8), Annual(sites, 30), now - 86_400, now + 365 * 86_400,
                             HolderKey(holder.public)), issuer)
    dynamic = present(bound, holder, now)
    return {"static": (len(static), qr.version(static)), "dynamic": (len(dynamic), qr.version(dynamic))}


def run_all(sizes: Sizes, console: Console) -> Results:
    results = Results(sizes, Machine.now(), dt.datetime.now(dt.UTC))
    log: Callable[[str], None] = lambda msg: console.log(f"  {msg}", highlight=False)  # noqa: E731

    def step(name: str, what: str, fn: Callable[[], T]) -> T | None:
        console.rule(f"[bold]{name}[/bold]: {what}")
        started = time.perf_counter()
        try:
            with console.status(f"running {name} …"):
                value = fn()
        except Exception as exc:  # one failing benchmark must not lose the others' figures
            results.errors[name] = f"{type(exc).__name__}: {exc}"
            console.log(f"[red]{name} failed: {exc}[/red]")
            return None
        finally:
            results.seconds[name] = time.perf_counter() - started
        console.log(f"[green]{name} done[/green] in {results.seconds[name]:.0f} s")
        return value

    s = sizes
    names = list(DECODER_NAMES)
    rows = step("decode", f"{s.decode_frames} frames per cell, {sizes_label(s.decode_sizes)}, {', '.join(names)}",
                lambda: decode_bench.run_decode_bench(s.decode_frames, list(s.decode_sizes), names, s.seed))
    if rows:
        results.decode_rows = rows
        results.recommendation = decode_figures.recommend(rows)
    results.video_rows = step(
        "video", f"{s.video_clips} clips per kind, {size_label(s.video_size)}, {', '.join(s.gate_decoders)}",
        lambda: video_bench.run_video_bench(s.video_clips, s.video_size, list(s.gate_decoders), s.seed,
                                            s.video_frames)) or []
    results.verify_rates = step("verify", f"{s.verify_seconds} s per measurement, {s.verify_revoked:,} revoked",
                                lambda: verify_bench.run_verify_bench(s.verify_seconds, s.verify_revoked)) or []
    results.qr = step("qr", "QR versions of freshly minted codes", qr_versions) or {}
    results.gate = step("gate", f"{s.gate_frames} frames per size, {sizes_label(s.gate_sizes)}, "
                                f"{', '.join(s.gate_decoders)}",
                        lambda: gate_bench.run_gate_bench(list(s.gate_sizes), s.gate_frames, s.gate_every,
                                                          s.gate_hold, s.seed, decoders=s.gate_decoders)) or []

    def ledger() -> list[Row]:
        with scratch_dir("citypass-bench-ledger-") as work:
            return ledger_bench.run_ledger_bench(s.revocations, s.lookups, s.updates, s.ledger_taps, work, log)

    results.ledger_rows = step("ledger", f"{s.revocations:,} revocations", ledger) or []

    def ingest() -> list[Row]:
        with scratch_dir("citypass-bench-ingest-") as work:
            return ingest_bench.run_ingest_bench(s.ingest_taps, s.clients, s.reservations, work, log)

    results.ingest_rows = step("ingest", f"{s.ingest_taps:,} taps, {s.clients} × {s.reservations} reservations",
                               ingest) or []
    results.console_rows = step(
        "console", f"{s.console_taps:,} taps, {s.console_groups:,} groups, {s.console_sites} sites",
        lambda: console_bench.run(s.console_taps, s.console_groups, s.console_sites, s.console_samples, 2000,
                                  s.console_seconds)) or []
    results.sync_rows = step("sync", f"{s.sync_gates} gates × {s.sync_taps:,} taps, {s.backlog:,} backlog",
                             lambda: sync_bench.run(s.sync_gates, s.sync_taps, s.backlog, s.sync_workers)) or []
    results.site = step("site", f"lanes of one site, N = {', '.join(str(n) for n in s.site_lanes)}, with and "
                        "without the city link",
                        lambda: site_bench.run_site(list(s.site_lanes), s.site_taps, s.site_every_ms)) or []
    results.startup_rows = step("startup", f"firmware hooks, {s.startup_runs} runs each",
                                lambda: startup_bench.run_startup_bench(s.startup_runs)) or []
    results.machine.load_after = load_average()
    return results


@click.command("all")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/benchmarks.md"),
              show_default=True, help="Where to write the Markdown report.")
@click.option("--quick", is_flag=True, help="Small sizes everywhere (about a minute; for tests, not the brief).")
def all_command(out: Path, quick: bool) -> None:
    """Run every benchmark in one process and write docs/benchmarks.md (figures, ratios, verdicts)."""
    console = Console()
    results = run_all(QUICK if quick else FULL, console)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = render(results)
    if out.exists():  # the sections measured on their own (bench broker, city, cluster) are kept, not dropped
        report = keep_hand_sections(out.read_text(encoding="utf-8"), report)
    out.write_text(report, encoding="utf-8")
    for row in summary(results):
        console.print(f"• {row.goal}: {row.measured} → {row.verdict}", highlight=False)
    console.print(f"[bold]wrote {out}[/bold]")
    if results.errors:
        raise click.ClickException(f"failed: {', '.join(results.errors)}")
