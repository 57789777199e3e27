"""``citypass bench startup``: how soon a firmware hook has the barrier in its safe state after it is started.

systemd runs ``citypass hooks safe-state`` in ``ExecStopPost=`` when the gate daemon has died, and ``citypass
hooks power-fail`` when the supercapacitor says the power is going: until the hook has claimed the pins and
driven the configured safe state, the relay is in whatever state the dead daemon left it. So the figure that
matters is the time from ``exec`` to the pins re-driven. A hook prints its report right after its last step
(parking the barrier), so the time from ``exec`` to the report's first line (stdout unbuffered) is when the
pins were safe, a few hundred microseconds late at most; the time to exit, which adds the interpreter's
teardown, is reported beside it. Each hook is run ``--runs`` times as a fresh process (``python -c 'from
citypass.cli import main; main()' hooks …`` — the console script's own code, without the script wrapper's
resolution of entry points) on gpiozero's mock pins, and the median, 90th percentile and fastest run are
reported beside the bare interpreter's start-up.

``--against DIR`` measures a source tree of another version too (put first on ``PYTHONPATH``), side by side
in the same run: the way to compare before and after a change on a machine whose absolute speed drifts.

    citypass bench startup --runs 15
    citypass bench startup --runs 15 --against /tmp/citypass-1.0   # a checkout of an older version
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from citypass.bench.report import Row, percentile, print_rows, scratch_dir

HOOKS = ("safe-state", "power-fail")
#: The goal: the safe-state hook has re-driven the pins within this long of exec.
GOAL_MS = 150.0
#: The same measurement of the tree before command groups and backends loaded lazily (commit e62a718, in one
#: run beside commit 5119512's with ``--against``, dev venv): exec → pins safe, medians of 15 runs.
BEFORE = "safe-state 536 ms and power-fail 490 ms (commit e62a718), against 152 ms and 153 ms in the same run"
CONFIG = """\
gate_id = "bench-hook"
site = "west-lake"
root_key = "root.pub"
pins = "mock"

[ledger]
path = "ledger.sqlite3"

[camera]
source = "dir:frames"
"""


def _time_process(argv: Sequence[str], runs: int, env: dict[str, str], cwd: Path) -> tuple[list[float], list[float]]:
    """Wall milliseconds of ``runs`` fresh runs of ``argv`` (one warm-up run first, for the page cache): from
    exec to the first line on stdout, and from exec to exit."""
    first, done = [], []
    for i in range(runs + 1):
        started = time.perf_counter()
        with subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.readline()
            printed = time.perf_counter()
            proc.stdout.read()
            error = proc.stderr.read()
            code = proc.wait(timeout=60)
        ended = time.perf_counter()
        if code != 0:
            raise RuntimeError(f"{' '.join(argv[3:])} failed ({code}): {error.decode(errors='replace')[-400:]}")
        if i:
            first.append((printed - started) * 1000)
            done.append((ended - started) * 1000)
    return first, done


def _row(label: str, samples: Sequence[float], note: str = "") -> Row:
    return Row(label, f"{percentile(samples, 0.5):.0f} ms",
               f"p90 {percentile(samples, 0.9):.0f} ms, fastest {min(samples):.0f} ms, {len(samples)} runs"
               + (f"; {note}" if note else ""))


def measure(runs: int, work: Path, tree: Path | None = None) -> dict[str, tuple[list[float], list[float]]]:
    """Per run, for the bare interpreter and each hook: milliseconds from exec to the first line of output and
    to exit. ``tree`` puts another source tree first on ``PYTHONPATH``."""
    config = work / "gate.toml"
    config.write_text(CONFIG, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "SERVICE_RESULT")}
    env["PYTHONUNBUFFERED"] = "1"  # the report's first line leaves the process when it is printed
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    python = [sys.executable, "-c"]
    out = {"python": _time_process([*python, "print()"], runs, env, work)}
    for hook in HOOKS:
        argv = [*python, "from citypass.cli import main; main()", "hooks", hook, "--config", str(config)]
        out[hook] = _time_process(argv, runs, env, work)
    return out


def run_startup_bench(runs: int, against: Path | None = None) -> list[Row]:
    with scratch_dir("citypass-bench-startup-") as work:
        now = measure(runs, work)
        before = measure(runs, work, against) if against is not None else None
    rows = [_row("python -c print() (the interpreter alone): exec → exit", now["python"][1])]
    for hook in HOOKS:
        safe, done = now[hook]
        note = f"goal: within {GOAL_MS:.0f} ms of exec" if hook == "safe-state" else ""
        rows.append(_row(f"hooks {hook}: exec → pins safe (report printed)", safe, note))
        rows.append(_row(f"hooks {hook}: exec → exit", done))
        if before is not None:
            ratio = percentile(before[hook][0], 0.5) / percentile(safe, 0.5)
            rows.append(_row(f"hooks {hook}, tree {against}: exec → pins safe", before[hook][0],
                             f"{ratio:.1f}× this tree's median"))
    return rows


@click.command("startup")
@click.option("--runs", type=click.IntRange(3, 200), default=15, show_default=True, help="Runs per measurement.")
@click.option("--against", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Also measure this source tree (another version's checkout), side by side.")
def startup_command(runs: int, against: Path | None) -> None:
    """Time the firmware hooks from exec to the pins in their safe state, and to exit."""
    print_rows("firmware hook start-up (mock pins)", run_startup_bench(runs, against))
