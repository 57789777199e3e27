"""What the benchmarks that report "measurement / result / note" rows share: the row, the table, a
scratch directory that is always removed, and a percentile that needs no numpy."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Row:
    measurement: str
    result: str
    note: str = ""


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank: ``percentile([1, 2, 3], 0.5) == 2``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@contextmanager
def scratch_dir(prefix: str, directory: Path | None = None) -> Iterator[Path]:
    """A temporary working directory (on ``directory``'s file system if given), removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_rows(title: str, rows: Sequence[Row], console: Console | None = None) -> None:
    table = Table(title=title)
    for column in ("measurement", "result", "note"):
        table.add_column(column, justify="right" if column == "result" else "left")
    for row in rows:
        table.add_row(row.measurement, row.result, row.note)
    (console or Console()).print(table)


Progress = Callable[[str], None]
