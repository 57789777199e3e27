"""Crash-safety harness: run a process that records taps, SIGKILL it at random instants, repeat.

Two parts, usable separately:

* :func:`kill_repeatedly` — the reusable harness. It starts ``argv`` again and again, kills each run
  with SIGKILL at a random moment (sometimes before the child says ``ready``, i.e. while it is still
  opening, migrating or recovering the ledger), and collects every line the child printed. The
  protocol is tiny so that the real daemon can speak it later (≥200 kills against the full daemon):
  print ``ready`` once the ledger is open, then one committed tap id per line, flushed, printed only
  *after* ``record()`` returned. A line counts only when its newline arrived.
* this file run as a script — a worker that decides and records taps on a ledger in a tight loop
  (allowed annual-pass entries, denied revoked codes, and an annulment every seventh allowed tap).

Example::

    run = kill_repeatedly([sys.executable, __file__, "ledger.sqlite3", "codes.json"], kills=30,
                          rng=random.Random(1))
    assert len(run.printed) == len(set(run.printed))       # then check each id is in the ledger

The parent then opens the ledger and checks: integrity ok, every printed id present exactly once,
usage and occupancy equal to what the recorded taps add up to.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class KillRun:
    printed: list[str] = field(default_factory=list)  # committed ids, in order, over all runs
    kills: int = 0
    early_kills: int = 0  # killed before the child said "ready"
    exits: list[int] = field(default_factory=list)  # children that ended on their own (a bug)


def _reader(stream: object, lines: list[str], ready: threading.Event) -> None:
    assert hasattr(stream, "readline")
    buffer = ""
    while True:
        chunk = stream.readline()
        if not chunk:
            return
        buffer += chunk
        if not buffer.endswith("\n"):
            continue  # a line cut by the kill: never counts
        line, buffer = buffer.strip(), ""
        if line == "ready":
            ready.set()
        elif line:
            lines.append(line)


def kill_repeatedly(argv: Sequence[str], *, kills: int, rng: random.Random, max_delay_s: float = 0.15,
                    early_fraction: float = 0.2, ready_timeout_s: float = 20.0,
                    cwd: Path | None = None) -> KillRun:
    """Start ``argv`` ``kills`` times and SIGKILL each run at a random instant; see module doc."""
    run = KillRun()
    for _ in range(kills):
        lines: list[str] = []
        ready = threading.Event()
        child = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 cwd=cwd)
        reader = threading.Thread(target=_reader, args=(child.stdout, lines, ready), daemon=True)
        reader.start()
        if rng.random() < early_fraction:
            time.sleep(rng.uniform(0.0, 0.5))  # during start-up, migration or WAL recovery
            run.early_kills += not ready.is_set()
        else:
            if not ready.wait(ready_timeout_s):
                child.kill()
                raise RuntimeError(f"{argv!r} did not print 'ready' within {ready_timeout_s} s")
            time.sleep(rng.uniform(0.0, max_delay_s))
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            run.kills += 1
        else:
            run.exits.append(child.returncode)
        child.wait()
        reader.join()
        if child.stdout is not None:
            child.stdout.close()
        run.printed.extend(lines)
    return run


def work(ledger_path: str, codes_path: str) -> None:
    """Decide and record taps until killed (the script's body)."""
    from citypass.gate.decision import decide
    from citypass.gate.ledger import GateLedger

    codes: list[str] = json.loads(Path(codes_path).read_text())
    ledger = GateLedger.open(ledger_path)
    ctx = ledger.context()
    print("ready", flush=True)
    rng = random.Random(os.getpid())
    allowed = 0
    while True:
        now = ledger.clock_floor + 1  # a clock that always moves forward, across restarts too
        decision = decide(rng.choice(codes), ledger, ctx, now)
        tap = ledger.record(decision, ctx, {"decided": time.time()})
        print(tap.tap_id, flush=True)
        if decision.allowed:
            allowed += 1
            if allowed % 7 == 0:
                ledger.annul(tap.tap_id, 1, now)
                ledger.annul(tap.tap_id, 1, now)  # a repeated report must change nothing


if __name__ == "__main__":
    work(sys.argv[1], sys.argv[2])
