"""``citypass bench gate --screen-client``: the gate's frame → relay with a lane screen connected, and without.

The brief wants the screen fed "without slowing the decision loop". This runs the same rig as ``bench gate``
(:mod:`citypass.bench.gate_rig`: the real daemon, ledger, decoder and barrier, one core) four times per size —
without a screen, with one, without, with — so the two runs of each kind show the run-to-run noise beside the
difference. "With" means what a lane has in service: the daemon's :class:`~citypass.gate.screen.display.LaneScreen`
fed from the decision loop, the health server with ``/screen/events`` on the gate's core, and a screen client in
a process of its own (:mod:`citypass.bench.screen_client`, not pinned: a kiosk browser runs on any core) holding
the event stream open and reading every event. The client's count of decision events is checked against the
daemon's decisions.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rich.table import Table

from citypass.bench.frames import Size
from citypass.bench.gate_figures import FRAME_INTERVAL_MS, SizeResult
from citypass.bench.gate_rig import measure_size
from citypass.credential.catalog import SHIPPED
from citypass.errors import CityPassError
from citypass.gate.config import GateConfig
from citypass.gate.daemon import LaneDisplay, Outcome
from citypass.gate.decision import GateContext
from citypass.gate.health import HealthServer
from citypass.gate.metrics import GateMetrics
from citypass.gate.screen.display import LaneScreen
from citypass.gate.screen.hub import ScreenHub
from citypass.gate.screen.texts import ScreenTexts


@dataclass(frozen=True)
class ScreenRun:
    screen: bool
    result: SizeResult
    shown: int | None  # decisions the daemon gave its screen, warm-up included (None: no screen)
    received: int | None  # decision events the screen client read


class _Counted(LaneScreen):
    shown = 0

    def show_outcome(self, outcome: Outcome) -> None:
        self.shown += 1
        super().show_outcome(outcome)


@contextlib.contextmanager
def screen_client(cfg: GateConfig, ctx: GateContext, got: list[tuple[int, int]]) -> Iterator[LaneDisplay]:
    """A lane screen on a health server, and a client process reading its events; appends to ``got`` how many
    decisions the daemon showed and how many decision events the client read, once the run is over."""
    hub = ScreenHub()
    texts = ScreenTexts(SHIPPED, ["zh", "en"], {"en": ctx.site.name})
    display = _Counted(hub, texts, ctx.site, cfg.policy.to_policy())
    server = HealthServer("127.0.0.1", 0, lambda: {"healthy": True}, GateMetrics(), display.endpoint()).start()
    url = f"http://127.0.0.1:{server.port}/screen/events"
    client = subprocess.Popen([sys.executable, "-m", "citypass.bench.screen_client", url],
                              stdout=subprocess.PIPE, text=True)
    with contextlib.suppress(OSError):  # the browser is not confined to the gate's core
        os.sched_setaffinity(client.pid, range(os.cpu_count() or 1))
    try:
        deadline = time.monotonic() + 30
        while hub.clients < 1:
            if client.poll() is not None or time.monotonic() > deadline:
                raise CityPassError("the screen client did not connect")
            time.sleep(0.01)
        yield display
    finally:
        hub.close()  # ends the stream: the client prints what it read and exits
        out, _ = client.communicate(timeout=30)
        server.close()
    got.append((display.shown, int(json.loads(out)["events"].get("decision", 0))))


def run_screen_comparison(sizes: Sequence[Size], frames: int, every: int, hold: int, seed: int,
                          synchronous: str = "FULL") -> dict[str, list[ScreenRun]]:
    """Per size: without, with, without, with a screen client (see the module doc)."""
    runs: dict[str, list[ScreenRun]] = {}
    for index, size in enumerate(sizes):
        label = f"{size[0]}x{size[1]}"
        for screen in (False, True, False, True):
            got: list[tuple[int, int]] = []

            def attach(cfg: GateConfig, ctx: GateContext,
                       got: list[tuple[int, int]] = got) -> contextlib.AbstractContextManager[LaneDisplay]:
                return screen_client(cfg, ctx, got)

            result = measure_size(size, frames, every, hold, seed, index, synchronous=synchronous,
                                  display=attach if screen else None)
            shown, received = got[0] if got else (None, None)
            runs.setdefault(label, []).append(ScreenRun(screen, result, shown, received))
    return runs


def render_comparison(runs: dict[str, list[ScreenRun]]) -> Table:
    table = Table(title="Frame → relay with and without a lane screen connected (one core; runs in the order "
                        "without, with, without, with)")
    for col in ("size", "screen client", "frame → relay ms p50 / p99 / max", "per frame ms mean",
                "sustained frames/s", "decisions shown / read by the screen"):
        table.add_column(col, justify="right" if col != "size" else "left", no_wrap=True)
    for label, items in runs.items():
        for i, run in enumerate(items):
            r = run.result
            table.add_row(label if i == 0 else "", "connected" if run.screen else "-",
                          r.frame_to_relay.text(with_max=True), f"{r.pipeline['all'].mean:.2f}", f"{r.fps:.0f}",
                          f"{run.shown} / {run.received}" if run.screen else "-",
                          end_section=i == len(items) - 1)
    return table


def screen_verdict(runs: dict[str, list[ScreenRun]]) -> str:
    """Whether the screen's difference in frame → relay p50 stays inside the spread of same-kind runs."""
    lines = []
    for label, items in runs.items():
        without = [r.result.frame_to_relay.p50 for r in items if not r.screen]
        with_ = [r.result.frame_to_relay.p50 for r in items if r.screen]
        noise = max(max(without) - min(without), max(with_) - min(with_))
        diff = sum(with_) / len(with_) - sum(without) / len(without)
        complete = all(r.received == r.shown and r.shown for r in items if r.screen)
        floor = 0.05 * FRAME_INTERVAL_MS  # differences under 5 % of a frame interval are noise whatever the spread
        within = abs(diff) <= max(noise, floor)
        lines.append(f"{label}: frame→relay p50 with a screen {diff:+.2f} ms against without (run-to-run spread "
                     f"{noise:.2f} ms, floor {floor:.2f} ms): {'within noise' if within else 'BEYOND noise'}; "
                     f"the screen read {'every' if complete else 'NOT every'} decision")
    return "\n".join(lines)
