"""What ``citypass bench gate`` reports, computed from what the rig (:mod:`citypass.bench.gate_rig`) recorded: the
per-frame and frame → relay spreads, the ratios to the bare decoder, the verdict against the brief's two
numbers, and the table.

*Frame classes.* Each measured frame is classified afterwards as *no code*, *code in view* (held or
already presented: decode and debounce only) or *decision* (a new presentation).

*Frame → relay.* From each decision's :attr:`citypass.gate.daemon.Outcome.stages`: ``relay - captured``, both
``time.monotonic``; ``relay`` is the barrier's own timestamp right after the relay pin write.

*Pipeline / bare.* The ratio of the pipeline's and the bare decoder's mean time per frame class, on the
same frames: the decision path's overhead on top of decoding.

*Sustained frames/s* = measured frames / sum of per-frame times: the rate the loop could keep up if
frames arrived back to back, with this mix of idle, held and deciding frames.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
from rich.table import Table

from citypass.gate.daemon import Outcome

if TYPE_CHECKING:
    from citypass.bench.gate_rig import ScriptedCamera, Shot

FRAME_INTERVAL_MS: Final = 1000.0 / 30  # one camera frame at 30 frames/s: the latency reference
TARGET_FPS: Final = 30.0
TARGET_SIZE: Final = (1280, 720)


@dataclass(frozen=True, slots=True)
class Spread:
    """Milliseconds: how many samples, and their p50 / p99 / max / mean."""

    n: int
    p50: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Spread:
        if not seconds:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        return cls(len(ms), float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max()),
                   float(ms.mean()))

    def text(self, with_max: bool = False) -> str:
        if not self.n:
            return "-"
        tail = f" / {self.max:.2f}" if with_max else ""
        return f"{self.p50:.2f} / {self.p99:.2f}{tail}"


FRAME_KINDS: Final = ("no_code", "code_in_view", "decision")


@dataclass(frozen=True)
class SizeResult:
    size: str
    decoder: str
    cpu: int | None
    frames: int
    fps: float  # sustained: measured frames / sum of per-frame times
    frame_to_relay: Spread
    stages_p50_ms: dict[str, float]  # captured→decoded, decoded→decided, decided→committed, committed→relay
    stages_p99_ms: dict[str, float]
    pipeline: dict[str, Spread]  # by frame kind, plus "all" and "code_all"
    bare: dict[str, Spread]
    overhead: dict[str, float]  # mean pipeline / mean bare decode, by frame kind
    presentations: int  # planned (measured) presentations
    decided: int
    allowed: int
    relays: int
    rejected_busy: int  # allowed, but the barrier refused the grant
    passages: int  # PassageConfirmed events the daemon drained and recorded (measured frames' grants)
    bare_reads: int  # frames with a code that the bare decoder read
    code_frames: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def summarise(label: str, decoder: str, cpu: int | None, shots: Sequence[Shot], camera: ScriptedCamera,
               recorded: dict[int, list[Outcome]], passages: int) -> SizeResult:
    """Classify the measured frames and turn the camera's timings and the daemon's outcomes into figures."""
    loop: dict[str, list[float]] = {k: [] for k in FRAME_KINDS}
    bare: dict[str, list[float]] = {k: [] for k in FRAME_KINDS}
    relay_s: list[float] = []
    stage_s: dict[str, list[float]] = {}
    decided = allowed = relays = busy = bare_reads = code_frames = 0
    presentations: set[int] = set()
    for i, shot in enumerate(shots):
        outcomes = recorded.get(i + 1, [])
        if shot.warmup:
            passages -= sum("relay" in o.stages for o in outcomes)  # the warm-up visitor walked too
            continue
        kind = "decision" if outcomes else "no_code" if shot.text is None else "code_in_view"
        loop[kind].append(camera.loop_s[i])
        bare[kind].append(camera.bare_s[i])
        if shot.presentation is not None:
            presentations.add(shot.presentation)
            code_frames += 1
            bare_reads += camera.bare_read[i]
        for o in outcomes:
            decided += 1
            allowed += o.decision.allowed
            if "relay" not in o.stages:
                busy += o.decision.allowed
                continue
            relays += 1
            relay_s.append(o.stages["relay"] - o.stages["captured"])
            names = ("captured", "decoded", "decided", "committed", "relay")
            for a, b in itertools.pairwise(names):
                stage_s.setdefault(f"{a}→{b}", []).append(o.stages[b] - o.stages[a])
    pipeline = {k: Spread.of(v) for k, v in loop.items()}
    pipeline["code_all"] = Spread.of(loop["code_in_view"] + loop["decision"])
    pipeline["all"] = Spread.of([s for v in loop.values() for s in v])
    bare_spread = {k: Spread.of(v) for k, v in bare.items()}
    bare_spread["code_all"] = Spread.of(bare["code_in_view"] + bare["decision"])
    bare_spread["all"] = Spread.of([s for v in bare.values() for s in v])
    overhead = {k: pipeline[k].mean / bare_spread[k].mean for k in pipeline
                if pipeline[k].n and bare_spread[k].mean > 0}
    total = sum(s for v in loop.values() for s in v)
    measured = pipeline["all"].n
    return SizeResult(
        size=label, decoder=decoder, cpu=cpu, frames=measured, fps=measured / total if total else math.nan,
        frame_to_relay=Spread.of(relay_s),
        stages_p50_ms={k: float(np.percentile(v, 50)) * 1000 for k, v in stage_s.items()},
        stages_p99_ms={k: float(np.percentile(v, 99)) * 1000 for k, v in stage_s.items()},
        pipeline=pipeline, bare=bare_spread, overhead=overhead, presentations=len(presentations),
        decided=decided, allowed=allowed, relays=relays, rejected_busy=busy, passages=passages,
        bare_reads=bare_reads,
        code_frames=code_frames,
    )


# -- reporting -----------------------------------------------------------------------------------------
def verdict(results: Sequence[SizeResult]) -> str:
    """One line against the brief's two numbers, judged on 1280x720 if measured, else the largest size
    (with the first decoder measured: the default unless ``--decoders`` named others)."""
    results = [r for r in results if r.decoder == results[0].decoder]
    by_size = {r.size: r for r in results}
    target = f"{TARGET_SIZE[0]}x{TARGET_SIZE[1]}"
    r = by_size.get(target) or max(results, key=lambda x: math.prod(int(v) for v in x.size.split("x")))
    p99 = r.frame_to_relay.p99
    latency_ok = r.frame_to_relay.n > 0 and p99 < FRAME_INTERVAL_MS / 2
    fps_ok = r.fps >= TARGET_FPS
    share = 100 * p99 / FRAME_INTERVAL_MS
    return (f"Verdict ({r.size}, {r.decoder}, one core): frame→relay p99 {p99:.1f} ms = {share:.0f}% of the "
            f"{FRAME_INTERVAL_MS:.1f} ms frame interval ({'MEETS' if latency_ok else 'MISSES'} "
            f"'well under', read as < half); sustained {r.fps:.0f} frames/s "
            f"({'MEETS' if fps_ok else 'MISSES'} ≥{TARGET_FPS:.0f}/s).")


def render_table(results: Sequence[SizeResult], synchronous: str = "FULL") -> Table:
    table = Table(title="Gate pipeline benchmark: real daemon, SQLite ledger (synchronous="
                        f"{synchronous}), barrier on mock pins; one core")
    table.add_column("measurement", no_wrap=True)
    for r in results:
        table.add_column(f"{r.size}\n{r.decoder}", justify="right", no_wrap=True)
    table.add_column("reference", no_wrap=True)

    def row(name: str, cell: Callable[[SizeResult], str], ref: str = "", end: bool = False) -> None:
        table.add_row(name, *(cell(r) for r in results), ref, end_section=end)

    row("sustained frames/s (this mix)", lambda r: f"{r.fps:.0f}", f"≥ {TARGET_FPS:.0f} at 1280x720")
    row("frame → relay ms p50 / p99 / max", lambda r: r.frame_to_relay.text(with_max=True),
        f"frame interval {FRAME_INTERVAL_MS:.1f} ms", end=True)
    def spread(which: str, kind: str) -> Callable[[SizeResult], str]:
        return lambda r: (r.pipeline if which == "pipeline" else r.bare)[kind].text()

    for kind, label in (("no_code", "no code in view"), ("code_in_view", "code in view, no decision"),
                        ("decision", "code in view, decision"), ("code_all", "code in view, all")):
        row(f"per frame ms p50 / p99: {label}", spread("pipeline", kind),
            f"budget {FRAME_INTERVAL_MS:.1f} ms/frame" if kind == "no_code" else "")
    for kind, label in (("no_code", "no code"), ("code_all", "code in view")):
        row(f"bare decode ms p50 / p99: {label}", spread("bare", kind))
    row("pipeline / bare decode (means): no code / code / decision",
        lambda r: " / ".join(f"{r.overhead.get(k, math.nan):.2f}x" for k in ("no_code", "code_in_view", "decision")),
        end=True)
    row("stage p50 ms: captured→decoded / →decided / →committed / →relay",
        lambda r: " / ".join(f"{v:.2f}" for v in r.stages_p50_ms.values()) or "-")
    row("stage p99 ms: captured→decoded / →decided / →committed / →relay",
        lambda r: " / ".join(f"{v:.2f}" for v in r.stages_p99_ms.values()) or "-",
        "commit includes an fsync" if synchronous == "FULL" else "commit without fsync")
    row("presentations: decided / planned", lambda r: f"{r.decided} / {r.presentations}")
    row("allowed / relay energised / rejected busy", lambda r: f"{r.allowed} / {r.relays} / {r.rejected_busy}")
    row("passages confirmed (simulated visitor)", lambda r: str(r.passages))
    row("bare decoder read (code frames)", lambda r: f"{r.bare_reads} / {r.code_frames}")
    row("frames measured", lambda r: str(r.frames))
    return table

