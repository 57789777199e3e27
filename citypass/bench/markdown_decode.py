"""The decoding sections of the ``citypass bench all`` report: still frames (``bench decode``) and presentation by
video (``bench video``).  Every sentence with a number is built from the run's figures
(:mod:`citypass.bench.decode_figures`); nothing here is written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from citypass.bench import decode as decode_bench
from citypass.bench import decode_figures as figs
from citypass.bench import video as video_bench
from citypass.bench.results import Results, size_label
from citypass.gate.decoders import DEFAULT_DECODER

Failed = Callable[[Results, str], list[str]]
Rich = Callable[[object], str]


def decode_section(results: Results, command: str, failed: Failed, rich_text: Rich) -> list[str]:
    s = results.sizes
    lines = ["## Decoding — `citypass bench decode`", "", f"`{command}`", ""]
    lines += failed(results, "decode")
    rec = results.recommendation
    if rec is None:
        return lines
    rows = results.decode_rows
    lines += [
        f"{s.decode_frames} synthetic phone-screen frames per condition and payload size (static ~170 "
        f"characters, dynamic ~350), at {', '.join(size_label(x) for x in s.decode_sizes)}, decode time only, one "
        "core. `bench/frames.py` and `bench/frame_effects.py` draw them: a phone screen in the camera frame, "
        "tilted, under a glare spot, motion-blurred, with a moiré screen grid, in dark mode, small, far away "
        "(1.5–2.5 px per module), shaken (a curved smear 0.6–2.2 modules long in any direction), in low light "
        "with the gain's noise, striped by the screen's refresh bands, half-covered by a thumb, behind a cracked "
        "and smudged protector; plus frames with no code at all (an empty scene, or a phone showing a 1-D "
        "barcode). Overall rows (read rate over frames with a code; cost over all frames, including those "
        "without one):",
        "", "```",
        rich_text(decode_bench.render_table([r for r in rows if r.condition == "overall"])),
        rec.line(), "```", "",
    ]
    names = list(dict.fromkeys(r.decoder for r in rows))
    per = figs.per_condition(rows)
    best = figs.best_per_condition(rows)
    conditions = list(dict.fromkeys(c for _, c in per))
    lines += [f"Reads per condition, all sizes and payloads (**bold**: fewer than the condition's best single "
              f"decoder, {' / '.join(sorted({d for d, _ in best.values()}))}):", "",
              "| condition | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for c in conditions:
        cells = []
        for n in names:
            reads, frames = per[(n, c)]
            cell = f"{reads} / {frames}"
            cells.append(f"**{cell}**" if c in best and reads < best[c][1] else cell)
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    overall = {r.decoder: r for r in rows if r.condition == "overall" and r.size == figs.ALL}
    lines += ["", "Cost against the best single decoder on the same frames (mean ms/frame ratio) and false reads "
              "(any text on a frame without a code, or wrong text):", "",
              "| decoder | read rate | all frames | frames without a code | p95 ms, all frames | false reads |",
              "| --- | --- | --- | --- | --- | --- |"]
    for n in names:
        st = figs.standing(rows, n, rec.best_single)
        lines.append(f"| {n} | {100 * st.read_rate:.1f}% | {st.cost_all:.2f}× | {st.cost_empty:.2f}× | "
                     f"{overall[n].p95_ms:.2f} | {st.false_reads} |")
    goals = rec.goals()
    lines += ["", f"**Recommended: {rec.decoder}.** The recommendation is the decoder reading the most frames with "
              f"no false reads whose cost is within {figs.COST_GOAL_ALL:g}× the best single decoder's over all "
              f"frames and {figs.COST_GOAL_EMPTY:g}× on frames without a code. Goals: "
              + ", ".join(f"{g} {'met' if ok else '**missed**'}" for g, ok in goals.items()) + "."]
    chain, pick = overall.get("chain"), overall.get(rec.decoder)
    if chain is not None and pick is not None and rec.decoder != "chain":
        lines[-1] += (f" The chain (zxing-cpp, then ZBar on every frame zxing-cpp cannot read) reads "
                      f"{chain.reads - pick.reads:+d} frames against {rec.decoder} at "
                      f"{figs.standing(rows, 'chain', rec.best_single).cost_empty:.1f}× the cost on frames without "
                      "a code: on an idle gate it runs ZBar on every frame.")
    lines += ["", *_misses(results), ""]
    return lines


#: Why one frame can defeat every decoder, by condition: said only where the decoder missed frames of it.
WHY: dict[str, str] = {
    "finger": "a thumb over a finder pattern hides what locates the code",
    "shake": "a smear longer than about two modules leaves too little of the grid",
    "far": "under about two pixels per module the optics blur the modules into each other",
    "banding": "a dark band can swallow a finder pattern's ring",
}


def _misses(results: Results) -> list[str]:
    """What the gate's default decoder (else the recommended one) still misses, by condition."""
    rec = results.recommendation
    if rec is None:
        return []
    per = figs.per_condition(results.decode_rows)
    name = DEFAULT_DECODER if any(d == DEFAULT_DECODER for d, _ in per) else rec.decoder
    missed = sorted(((frames - reads, c) for (d, c), (reads, frames) in per.items()
                     if d == name and reads < frames), reverse=True)
    if not missed:
        return [f"{name} read every frame with a code."]
    total = sum(n for n, _ in missed)
    why = [f"{c}: {WHY[c]}" for _, c in missed if c in WHY]
    return [f"Where {name} still misses ({total} frames): " + ", ".join(f"{c} {n}" for n, c in missed) + "."
            + (f" Why one frame can defeat it — {'; '.join(why)}." if why else "")
            + " The video benchmark below shows how the same visitor is read a few frames later."]


def video_section(results: Results, command: str, failed: Failed, rich_text: Rich) -> list[str]:
    s = results.sizes
    lines = ["## Presentation by video — `citypass bench video`", "", f"`{command}`", ""]
    lines += failed(results, "video")
    if not results.video_rows:
        return lines
    lines += [
        f"{s.video_clips} synthetic clips per kind at {size_label(s.video_size)}, {s.video_frames} frames each at 30 "
        "frames/s (`bench/clips.py`): a phone slides into view, is held with a trembling hand (steady, shaky, far "
        "away, in dim light, with rolling refresh bands) and slides out. Each decoder plays the same clips in "
        "simulated real time on one core: it decodes the newest frame whenever it is free, and its measured "
        "decoding time moves the clock. Time to decision runs from the arrival of the first frame that shows the "
        "whole code to the end of the decode that read it; a clip never read counts as never decided. The phone "
        "is still sliding in when the code first shows whole, smeared by its own speed, so the first frames in "
        "view are rarely read by any decoder.",
        "", "```", rich_text(video_bench.render_table(results.video_rows)), "```", ""]
    by = {(r.decoder, r.kind): r for r in results.video_rows}
    names = list(dict.fromkeys(r.decoder for r in results.video_rows))
    if len(names) >= 2:
        a, b = by[(names[0], video_bench.ALL)], by[(names[1], video_bench.ALL)]
        lines += [f"Over all clips {names[0]} read {a.read} of {a.clips} (p50 {_ms(a.p50_ms)} ms, p99 "
                  f"{_ms(a.p99_ms)} ms), {names[1]} {b.read} (p50 {_ms(b.p50_ms)} ms, p99 {_ms(b.p99_ms)} ms); "
                  f"{names[0]} spent {a.decode_ms:.2f} ms per decoded frame against {b.decode_ms:.2f}.", ""]
    return lines


def _ms(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.0f}"
