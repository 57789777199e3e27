"""``citypass bench video``: how long a visitor holds the phone up before the gate decides.

``bench decode`` asks whether one frame is readable; a visitor shows the gate a *stream* of frames,
and what matters is the time from the first frame that shows the whole code to the decision.  This
benchmark renders short clips (:mod:`citypass.bench.clips`: the phone comes into view, trembles in the
visitor's hand, leaves) and plays each to every decoder as a live camera would.

Method
------
*Real time, simulated.*  Frame *i* of a clip arrives at ``i / 30`` s.  The decoder takes the newest
frame that has arrived when it is free (latest frame wins, as in the gate daemon), and its real decoding
time (``time.perf_counter``, one core) moves the clock on; so a slow decoder also skips frames.  The
decision is the moment a decode returns the clip's text; *time to decision* is that moment minus the
arrival of the first frame with the whole code in view.  A clip never read is a *miss* and counts as
never decided (so a percentile beyond the share of clips read is "never").

*Same clips.*  Every decoder sees the same frames; one decoder instance per name lives through all the
clips, as on the gate (its memory of past frames included).  Clips alternate the order of decoders.

Example::

    >>> from citypass.bench.video import run_video_bench
    >>> rows = run_video_bench(1, (640, 480), ["retry", "zxing"], seed=2, frames=24, kinds=["steady"])
    >>> [(r.decoder, r.kind, r.clips) for r in rows if r.kind == "all"]
    [('retry', 'all', 1), ('zxing', 'all', 1)]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from citypass.bench.clips import CLIP_KINDS, FPS, Clip, make_clip
from citypass.bench.decode import one_core
from citypass.bench.frames import Size, parse_size, random_payload
from citypass.gate.decoders import DECODER_NAMES, Decoder, make_decoder

ALL = "all"


@dataclass(frozen=True, slots=True)
class VideoRow:
    """One decoder on one kind of clip (or ``all``): how many were read and how fast."""

    decoder: str
    kind: str
    clips: int
    read: int
    p50_ms: float  # time from the first frame in view to the decision; inf when more than half were missed
    p90_ms: float
    p99_ms: float
    mean_frames: float  # frames decoded per clip until the decision (or to the clip's end)
    decode_ms: float  # mean decode time per frame decoded

    def as_dict(self) -> dict[str, object]:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class _Play:
    decoder: str
    kind: str
    seconds: float  # to decision from the first frame in view; inf if never read
    frames: int
    decode_s: float


def play(decoder: Decoder, clip: Clip) -> _Play:
    """Play *clip* to *decoder* in simulated real time (see the module docstring)."""
    interval = 1.0 / FPS
    busy_until, i, decoded, spent = 0.0, 0, 0, 0.0
    while i < len(clip.frames):
        start = max(i * interval, busy_until)
        newest = min(len(clip.frames) - 1, max(i, math.floor(start / interval + 1e-9)))
        t0 = time.perf_counter()
        found = decoder.decode(clip.frames[newest])
        took = time.perf_counter() - t0
        decoded, spent, busy_until = decoded + 1, spent + took, start + took
        if any(d.text == clip.text for d in found):
            seen = clip.first_in_view * interval
            return _Play(decoder.name, clip.kind, max(0.0, busy_until - seen), decoded, spent)
        i = newest + 1
    return _Play(decoder.name, clip.kind, math.inf, decoded, spent)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = q / 100 * (len(ordered) - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    if math.isinf(ordered[hi]):
        return math.inf
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def _row(decoder: str, kind: str, plays: Sequence[_Play]) -> VideoRow:
    ms = [p.seconds * 1000 for p in plays]
    frames = sum(p.frames for p in plays)
    return VideoRow(decoder, kind, len(plays), sum(not math.isinf(p.seconds) for p in plays),
                    _percentile(ms, 50), _percentile(ms, 90), _percentile(ms, 99),
                    frames / len(plays) if plays else math.nan,
                    1000 * sum(p.decode_s for p in plays) / frames if frames else math.nan)


def run_video_bench(clips_per_kind: int, size: Size, decoders: Sequence[str], seed: int, frames: int = 45,
                    kinds: Sequence[str] = CLIP_KINDS) -> list[VideoRow]:
    """Render ``clips_per_kind`` clips of each kind and play each to every decoder; rows per decoder and
    kind, then per decoder over all clips (``kind == "all"``)."""
    built = {name: make_decoder(name) for name in decoders}
    plays: list[_Play] = []
    with one_core():
        n = 0
        for k, kind in enumerate(kinds):
            for c in range(clips_per_kind):
                rng = np.random.default_rng([seed, k, c])
                clip = make_clip(random_payload(rng, "static" if c % 2 == 0 else "dynamic"), kind, size, rng, frames)
                order = list(built.values())
                order = order[n % len(order):] + order[: n % len(order)]
                n += 1
                plays += [play(dec, clip) for dec in order]
    rows = [_row(name, kind, [p for p in plays if p.decoder == name and p.kind == kind])
            for name in decoders for kind in kinds]
    rows += [_row(name, ALL, [p for p in plays if p.decoder == name]) for name in decoders]
    return rows


def _ms(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.0f}"


def render_table(rows: Sequence[VideoRow]) -> Table:
    table = Table(title="Presentation by video: first frame in view → decision, ms (one core, 30 frames/s)")
    for col in ("clips", "decoder", "read", "p50", "p90", "p99", "frames decoded", "ms/frame"):
        table.add_column(col, justify="left" if col in ("clips", "decoder") else "right", no_wrap=True)
    kinds = list(dict.fromkeys(r.kind for r in rows))
    for kind in kinds:
        group = [r for r in rows if r.kind == kind]
        for n, r in enumerate(group):
            table.add_row(kind if n == 0 else "", r.decoder, f"{r.read}/{r.clips}", _ms(r.p50_ms), _ms(r.p90_ms),
                          _ms(r.p99_ms), f"{r.mean_frames:.1f}", f"{r.decode_ms:.2f}",
                          end_section=n == len(group) - 1)
    return table


@click.command("video")
@click.option("--clips", "clips", default=8, show_default=True, type=click.IntRange(1),
              help="Clips per kind (steady, shaky, far, dim, banding).")
@click.option("--size", "size", default="1280x720", show_default=True, help="WIDTHxHEIGHT of the clips.")
@click.option("--frames", default=45, show_default=True, type=click.IntRange(20),
              help="Frames per clip at 30 frames/s (the phone is in view for all but about 13 of them).")
@click.option("--decoders", "decoders", default="retry,zxing", show_default=True,
              help=f"Comma-separated decoder names ({', '.join(DECODER_NAMES)}).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the clips.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def video_command(clips: int, size: str, frames: int, decoders: str, seed: int, as_json: bool) -> None:
    """Time from a code's first frame in view to the decision, on synthetic clips, per decoder.

    Clips of a phone coming into view, held with a trembling hand, and leaving; each decoder plays the
    same clips in simulated real time on one core.  Reports clips read and the time to decision
    p50/p90/p99 per kind of clip and overall.
    """
    try:
        wh = parse_size(size)
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, got {size!r}", param_hint="--size") from None
    names = [n.strip() for n in decoders.split(",") if n.strip()]
    unknown = [n for n in names if n not in DECODER_NAMES]
    if unknown or not names:
        raise click.BadParameter(f"unknown decoder(s) {unknown}; choose from {', '.join(DECODER_NAMES)}",
                                 param_hint="--decoders")
    rows = run_video_bench(clips, wh, names, seed, frames)
    if as_json:
        click.echo(json.dumps({"rows": [r.as_dict() for r in rows]}, indent=1))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(render_table(rows))
