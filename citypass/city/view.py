"""The live view: every gate's decisions as they happen, with the reasons in Chinese and English.

:class:`CityView` is fed from the visitor threads (:meth:`CityView.record`) and rendered by rich's
``Live`` from its own refresh thread (``__rich__``), so it keeps its state under a lock. On a terminal
it is a table per gate plus the latest decisions; in a log (CI, a pipe) it prints one line per decision
instead, which is also what the end-to-end test reads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from citypass.city.lane import VisitResult
from citypass.city.script import GateSpec


@dataclass
class GateTally:
    spec: GateSpec
    allowed: int = 0
    denied: int = 0
    walked: int = 0
    last: str = ""


class CityView:
    def __init__(self, console: Console, gates: tuple[GateSpec, ...], links: Callable[[], dict[str, bool]],
                 *, live: bool) -> None:
        self.console = console
        self.live = live
        self.links = links
        self.phase = "starting"
        self.tallies = {g.gate_id: GateTally(g) for g in gates}
        self.recent: deque[VisitResult] = deque(maxlen=12)
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def set_phase(self, name: str, note: str) -> None:
        with self._lock:
            self.phase = name
        self.console.print(f"[bold]── {name}[/]: {note}")

    def record(self, result: VisitResult) -> None:
        with self._lock:
            tally = self.tallies[result.gate]
            decision = result.outcome.decision if result.outcome is not None else None
            if decision is not None and decision.allowed:
                tally.allowed += 1
            elif decision is not None:
                tally.denied += 1
            tally.walked += result.walked
            tally.last = f"{result.describe()} — {result.visit.label}"
            self.recent.append(result)
        if not self.live:
            self.console.print(line(result), highlight=False, soft_wrap=True)

    def __rich__(self) -> Group:
        """Two tables sized to the terminal: one row per gate (link state, counts, the last decision),
        then the latest decisions across the city, newest first, one line each."""
        with self._lock:
            links = self.links()
            gates = Table(title=f"City Pass — {self.phase} — {time.monotonic() - self.started:.0f} s", expand=True)
            gates.add_column("gate", no_wrap=True)
            gates.add_column("link", no_wrap=True)
            for col in ("ok", "no", "in"):
                gates.add_column(col, justify="right", no_wrap=True)
            gates.add_column("last decision / 最近判定", no_wrap=True, overflow="ellipsis", ratio=1)
            for gate_id, t in self.tallies.items():
                up = links.get(gate_id)
                link = "[green]online[/]" if up else "[red]OFFLINE[/]" if up is False else "—"
                gates.add_row(gate_id, link, str(t.allowed), str(t.denied), str(t.walked), t.last)
            recent = Table(title="Latest decisions / 最新判定", expand=True)
            recent.add_column("gate", no_wrap=True)
            recent.add_column("visitor", no_wrap=True, overflow="ellipsis", ratio=2)
            recent.add_column("decision / 判定", no_wrap=True, overflow="ellipsis", ratio=3)
            rows = max(3, min(self.recent.maxlen or 12, self.console.height - 18))
            for r in list(reversed(self.recent))[:rows]:
                colour = "green" if r.outcome is not None and r.outcome.decision.allowed else "red"
                miss = "" if r.matches else f" (expected {r.visit.expect.describe()})"
                recent.add_row(r.gate, r.visit.label, Text(r.describe() + miss, style=colour if not miss else "yellow"))
            return Group(gates, recent)


def line(result: VisitResult) -> str:
    """One decision as a log line: phase, gate, visitor, decision and reason (zh / en)."""
    miss = "" if result.matches else f"   << expected {result.visit.expect.describe()}"
    return f"{result.phase:<10} {result.gate:<23} {result.visit.label:<44} {result.describe()}{miss}"
