"""The machine a benchmark run measured: CPU model, cores (and how many this process may use), memory,
kernel, Python, and the load average before and after the run, as the report's "Machine" table shows it.

Read from ``/proc`` where it exists, from :mod:`platform` and :mod:`os` otherwise; whatever cannot be
read is reported as unknown rather than failing the run.
"""

from __future__ import annotations

import math
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    match = re.search(r"^MemTotal:\s+(\d+) kB", _read("/proc/meminfo"), re.MULTILINE)
    return int(match.group(1)) / 1024**2 if match else math.nan


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


@dataclass
class Machine:
    cpu: str
    cores: int
    usable_cores: int
    memory_gib: float
    kernel: str
    python: str
    load_before: str
    load_after: str = ""

    @classmethod
    def now(cls) -> Machine:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return cls(cpu=cpu_model(), cores=os.cpu_count() or 1, usable_cores=usable, memory_gib=memory_gib(),
                   kernel=f"{platform.system()} {platform.release()} ({platform.machine()})",
                   python=f"{platform.python_implementation()} {platform.python_version()}",
                   load_before=load_average())
