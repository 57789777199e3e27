"""``citypass bench gate``: the whole gate, frame in → relay energised, on real parts and one core.

``bench decode`` times the decoder alone; this benchmark times what a visitor waits for. It runs the real
gate daemon's own loop on a real ledger, decoder and barrier, fed by a scripted camera: the rig and the method are in
:mod:`citypass.bench.gate_rig`, what is computed from the recordings in :mod:`citypass.bench.gate_figures`.

*The disk.* With ``synchronous=FULL`` (the gate's setting) the commit before the relay includes an
fsync, so the frame → relay tail is the tail of the storage's fsync latency, not of the code: the
``stage p99`` row shows which stage it is. Run with ``--dir`` on the gate's own flash to measure the
device; ``--synchronous NORMAL`` (or ``--dir /dev/shm``) shows the pipeline without the fsync.

Example::

    citypass bench gate                                 # 640x480 and 1280x720, 600 frames each
    citypass bench gate --size 1280x720 --frames 1200 --json
    citypass bench gate --dir /var/lib/citypass         # on the device's storage
    citypass bench gate --decoders retry,zxing          # the default decoder beside bare zxing-cpp
    citypass bench gate --screen-client                 # the same, without and with a lane screen connected
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console

from citypass.bench.frames import Size, parse_size
from citypass.bench.gate_figures import FRAME_INTERVAL_MS, TARGET_FPS, SizeResult, render_table, verdict
from citypass.bench.gate_rig import measure_size
from citypass.errors import InvalidInput
from citypass.gate.decoders import DECODER_NAMES, DEFAULT_DECODER


def run_gate_bench(sizes: Sequence[Size], frames: int, every: int, hold: int, seed: int,
                   directory: Path | None = None, synchronous: str = "FULL",
                   decoders: Sequence[str] = (DEFAULT_DECODER,)) -> list[SizeResult]:
    """Measure each size with each decoder in turn (each run with its own issuer, ledger and daemon, on the
    same frames for every decoder)."""
    if not 1 <= hold < every:
        raise InvalidInput("need 1 <= hold < every")
    unknown = [d for d in decoders if d not in DECODER_NAMES]
    if unknown or not decoders:
        raise InvalidInput(f"unknown decoder(s) {unknown}; choose from {', '.join(DECODER_NAMES)}")
    return [measure_size(size, frames, every, hold, seed, i, directory, synchronous, decoder)
            for i, size in enumerate(sizes) for decoder in decoders]


@click.command("gate")
@click.option("--size", "size", default="640x480,1280x720", show_default=True,
              help="Comma-separated WIDTHxHEIGHT frame sizes.")
@click.option("--frames", default=600, show_default=True, type=click.IntRange(10),
              help="Measured frames per size (after one warm-up cycle).")
@click.option("--every", default=6, show_default=True, type=click.IntRange(2),
              help="A new code comes into view every this many frames.")
@click.option("--hold", default=2, show_default=True, type=click.IntRange(1),
              help="Frames each code stays in view (must be less than --every).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the frames.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the temporary ledger (default: the system temp dir); use the gate's disk.")
@click.option("--synchronous", type=click.Choice(["FULL", "NORMAL"]), default="FULL", show_default=True,
              help="The ledger's PRAGMA synchronous. FULL is the gate's setting (an fsync per commit); NORMAL "
                   "shows what the pipeline costs without the disk's fsync latency.")
@click.option("--decoders", "decoders", default=DEFAULT_DECODER, show_default=True,
              help=f"Comma-separated decoders to run the daemon with, one run each on the same frames "
                   f"({', '.join(DECODER_NAMES)}); the verdict is the first one's.")
@click.option("--screen-client", is_flag=True,
              help="Instead: compare frame → relay without and with a lane screen connected (its event stream read "
                   "by a client process), each twice, to show the screen's cost beside the run-to-run noise.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def gate_command(size: str, frames: int, every: int, hold: int, seed: int, directory: Path | None,
                 synchronous: str, decoders: str, screen_client: bool, as_json: bool) -> None:
    """Time the whole gate pipeline, frame in → relay energised, on one core.

    A real daemon (SQLite ledger from a signed snapshot, the decoder, barrier on mock pins) runs on rendered
    phone-screen frames; reports sustained frames/s, frame→relay p50/p99/max, per-frame time with and
    without a code in view, and the same frames' bare decode time.
    """
    try:
        sizes = [parse_size(s) for s in size.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT[,WIDTHxHEIGHT...], got {size!r}",
                                 param_hint="--size") from None
    if hold >= every:
        raise click.BadParameter("--hold must be less than --every", param_hint="--hold")
    if screen_client:
        _screen_comparison(sizes, frames, every, hold, seed, synchronous, as_json)
        return
    names = [d.strip() for d in decoders.split(",") if d.strip()]
    try:
        results = run_gate_bench(sizes, frames, every, hold, seed, directory, synchronous, names)
    except InvalidInput as exc:
        raise click.BadParameter(str(exc), param_hint="--decoders") from None
    if as_json:
        click.echo(json.dumps({"results": [r.as_dict() for r in results], "verdict": verdict(results),
                               "frame_interval_ms": FRAME_INTERVAL_MS, "target_fps": TARGET_FPS,
                               "synchronous": synchronous},
                              indent=1, ensure_ascii=False))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(render_table(results, synchronous))
    console.print(verdict(results))


def _screen_comparison(sizes: Sequence[Size], frames: int, every: int, hold: int, seed: int, synchronous: str,
                       as_json: bool) -> None:
    from citypass.bench.gate_screen import render_comparison, run_screen_comparison, screen_verdict

    runs = run_screen_comparison(sizes, frames, every, hold, seed, synchronous)
    if as_json:
        click.echo(json.dumps({"runs": {size: [{"screen": r.screen, "received": r.received, **r.result.as_dict()}
                                               for r in items] for size, items in runs.items()},
                               "verdict": screen_verdict(runs)}, indent=1, ensure_ascii=False))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(render_comparison(runs))
    console.print(screen_verdict(runs))


if __name__ == "__main__":
    gate_command()
