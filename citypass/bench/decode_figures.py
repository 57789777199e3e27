"""What ``citypass bench decode`` computes from its measurements: the rows, reads per condition, each decoder's
cost relative to the bare decoder, the goals of the decode benchmark and the recommendation.

*Best single decoder.*  Of the decoders built on one library (:data:`~citypass.gate.decoders.SINGLE_DECODERS`:
zxing-cpp, ZBar), the one that reads the most frames with a code.  It is the *baseline*: every cost is
given as a ratio to its mean ms/frame on the same frames — over all frames, and over the frames
without a code (an idle gate's frames).

*Goals* (issue 17, from the brief's "≥ 98 % of phone-screen frames, including codes held far away and
shaken, above any single decoder, at ≤ 1.5× the bare decoder's cost"): read at least
:data:`READ_GOAL` of all frames with a code; in *every* condition read at least as many frames as the
best single decoder does in that condition; no false reads; mean cost at most :data:`COST_GOAL_ALL` x
the baseline's over all frames and :data:`COST_GOAL_EMPTY` x on frames without a code.

*Recommendation.*  Among the decoders with no false reads that meet both cost goals, the one that reads
the most frames (ties: the cheaper).  The baseline always qualifies, so there is always a pick.

Example::

    >>> from citypass.bench.decode_figures import Row, recommend
    >>> rows = [Row("a", "all", "overall", "all", 11, 10, 9, 0, 2.0, 3.0),
    ...         Row("a", "640x480", "no_code", "none", 1, 0, 0, 0, 1.0, 1.0),
    ...         Row("zxing", "all", "overall", "all", 11, 10, 8, 0, 1.5, 2.0),
    ...         Row("zxing", "640x480", "no_code", "none", 1, 0, 0, 0, 1.0, 1.0)]
    >>> rec = recommend(rows)
    >>> rec.decoder, rec.best_single, round(rec.cost_all, 2), rec.cost_empty
    ('a', 'zxing', 1.33, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Final

from citypass.gate.decoders import SINGLE_DECODERS

ALL: Final = "all"
TARGET_FPS: Final = 30.0
TARGET_SIZE: Final = (1280, 720)
READ_GOAL: Final = 0.98
COST_GOAL_ALL: Final = 1.5
COST_GOAL_EMPTY: Final = 1.2
NO_CODE: Final = "no_code"


@dataclass(frozen=True, slots=True)
class Row:
    """One cell of the benchmark: a decoder on one kind of frame (or ``overall``)."""

    decoder: str
    size: str  # "1280x720", or "all"
    condition: str  # a condition from bench.frames, or "overall"
    payload: str  # "static", "dynamic", "none" (no_code) or "all"
    frames: int  # frames decoded
    code_frames: int  # of which contained a code (the denominator of read_rate)
    reads: int  # correct text decoded
    false_reads: int  # wrong text, or anything on a no_code frame
    mean_ms: float
    p95_ms: float

    @property
    def read_rate(self) -> float:
        return self.reads / self.code_frames if self.code_frames else 0.0

    @property
    def fps(self) -> float:
        return 1000.0 / self.mean_ms if self.mean_ms > 0 else float("inf")

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "read_rate": round(self.read_rate, 4), "fps": round(self.fps, 1)}


def per_condition(rows: Sequence[Row]) -> dict[tuple[str, str], tuple[int, int]]:
    """(decoder, condition) -> (reads, frames with a code), over all sizes and payloads."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for r in rows:
        if r.condition not in ("overall", NO_CODE) and r.size != ALL:
            reads, frames = out.get((r.decoder, r.condition), (0, 0))
            out[(r.decoder, r.condition)] = (reads + r.reads, frames + r.code_frames)
    return out


def best_per_condition(rows: Sequence[Row]) -> dict[str, tuple[str, int]]:
    """condition -> (the single decoder reading the most frames in it, its reads)."""
    best: dict[str, tuple[str, int]] = {}
    for (decoder, condition), (reads, _) in per_condition(rows).items():
        if decoder in SINGLE_DECODERS and reads > best.get(condition, ("", -1))[1]:
            best[condition] = (decoder, reads)
    return best


def _empty_ms(rows: Sequence[Row], decoder: str) -> float:
    cells = [r for r in rows if r.decoder == decoder and r.condition == NO_CODE]
    frames = sum(r.frames for r in cells)
    return sum(r.mean_ms * r.frames for r in cells) / frames if frames else math.nan


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The recommended decoder's figures beside the best single decoder's, and the goals they meet."""

    decoder: str
    best_single: str
    reads: int
    best_single_reads: int
    code_frames: int
    false_reads: int
    mean_ms: float
    cost_all: float  # mean ms over all frames / the best single decoder's
    cost_empty: float  # the same over frames without a code
    behind: tuple[str, ...]  # conditions where it reads fewer frames than that condition's best single decoder
    target_fps: float | None  # frames/s at 1280x720 if that size was measured

    @property
    def read_rate(self) -> float:
        return self.reads / self.code_frames if self.code_frames else 0.0

    def goals(self) -> dict[str, bool]:
        """Each goal of the decode benchmark, met or not (see the module docstring). The cost ratios are judged as
        the report prints them (read rate to 0.1 %, costs to two decimals: 1.204× reads "1.20×" and meets 1.2×)."""
        return {"read rate": round(100 * self.read_rate, 1) >= 100 * READ_GOAL, "every condition": not self.behind,
                "no false reads": self.false_reads == 0, "cost, all frames": round(self.cost_all, 2) <= COST_GOAL_ALL,
                "cost, no code": round(self.cost_empty, 2) <= COST_GOAL_EMPTY}

    def line(self) -> str:
        best = 100.0 * self.best_single_reads / max(1, self.code_frames)
        fps = ""
        if self.target_fps is not None:
            verdict = "meets" if self.target_fps >= TARGET_FPS else "MISSES"
            fps = (f"; {self.target_fps:.0f} frames/s at 1280x720 on one core "
                   f"({verdict} the {TARGET_FPS:.0f} frames/s target)")
        behind = f"; behind in {', '.join(self.behind)}" if self.behind else "; at least as many in every condition"
        return (f"Recommendation: {self.decoder} reads {100 * self.read_rate:.1f}% (best single decoder "
                f"{self.best_single}: {best:.1f}%) at {self.mean_ms:.2f} ms/frame mean, {self.cost_all:.2f}x "
                f"{self.best_single}'s cost over all frames and {self.cost_empty:.2f}x on frames without a code; "
                f"{self.false_reads} false reads{behind}{fps}")


def standing(rows: Sequence[Row], decoder: str, baseline: str) -> Recommendation:
    """*decoder*'s figures against *baseline* (see :class:`Recommendation`)."""
    overall = {r.decoder: r for r in rows if r.condition == "overall" and r.size == ALL}
    me, base = overall[decoder], overall[baseline]
    mine = per_condition(rows)
    behind = tuple(c for c, (_, best) in best_per_condition(rows).items() if mine.get((decoder, c), (0, 0))[0] < best)
    target = f"{TARGET_SIZE[0]}x{TARGET_SIZE[1]}"
    at_target = [r for r in rows if (r.decoder, r.condition, r.size) == (decoder, "overall", target)]
    base_empty = _empty_ms(rows, baseline)
    return Recommendation(
        decoder=decoder, best_single=baseline, reads=me.reads, best_single_reads=base.reads,
        code_frames=me.code_frames, false_reads=me.false_reads, mean_ms=me.mean_ms,
        cost_all=me.mean_ms / base.mean_ms if base.mean_ms > 0 else math.nan,
        cost_empty=_empty_ms(rows, decoder) / base_empty if base_empty > 0 else math.nan,
        behind=behind, target_fps=at_target[0].fps if at_target else None)


def recommend(rows: Sequence[Row]) -> Recommendation:
    """The decoder reading the most frames among those with no false reads within both cost goals."""
    overall = {r.decoder: r for r in rows if r.condition == "overall" and r.size == ALL}
    singles = [r for r in overall.values() if r.decoder in SINGLE_DECODERS] or list(overall.values())
    baseline = max(singles, key=lambda r: (r.reads, -r.mean_ms)).decoder
    options = [standing(rows, name, baseline) for name in overall]
    eligible = [o for o in options if o.false_reads == 0 and (o.decoder == baseline or (
        o.cost_all <= COST_GOAL_ALL and o.cost_empty <= COST_GOAL_EMPTY))]
    return max(eligible or options, key=lambda o: (o.reads, -o.mean_ms))
