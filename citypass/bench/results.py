"""What one ``citypass bench all`` run is made of: its sizes (``FULL``, the brief's scale, or ``QUICK``, for
tests), the :class:`Results` it collects, and the exact command that reproduces each figure alone.

``--quick`` uses small sizes everywhere; its figures are not the brief's scale, and the summary says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from citypass.bench import decode_figures, gate_figures
from citypass.bench import site as site_bench
from citypass.bench import verify as verify_bench
from citypass.bench import video as video_bench
from citypass.bench.machine import Machine
from citypass.bench.report import Row
from citypass.gate.decoders import DECODER_NAMES, DEFAULT_DECODER

UPDATES_TARGET = 100_000
REVOCATIONS_TARGET = 10_000_000
BACKLOG_TARGET = 100_000


@dataclass(frozen=True)
class Sizes:
    """Every benchmark's parameters; ``FULL`` is the brief's scale, ``QUICK`` is for tests."""

    decode_frames: int
    decode_sizes: tuple[tuple[int, int], ...]
    verify_seconds: float
    verify_revoked: int
    gate_sizes: tuple[tuple[int, int], ...]
    gate_frames: int
    revocations: int
    lookups: int
    updates: int
    ledger_taps: int
    ingest_taps: int
    clients: int
    reservations: int
    sync_gates: int
    sync_taps: int
    backlog: int
    sync_workers: int = 2
    site_lanes: tuple[int, ...] = (2, 4, 8)
    site_taps: int = 100
    site_every_ms: int = 100
    startup_runs: int = 15
    console_taps: int = 200_000  # `citypass bench console --full` measures the 1,000,000
    console_groups: int = 1000
    console_sites: int = 150
    console_samples: int = 20
    console_seconds: float = 10.0
    video_clips: int = 8  # per kind of clip
    video_size: tuple[int, int] = (1280, 720)
    video_frames: int = 45
    #: the gate bench runs the daemon with each: the default decoder, then bare zxing-cpp beside it
    gate_decoders: tuple[str, ...] = (DEFAULT_DECODER, "zxing")
    gate_every: int = 6
    gate_hold: int = 2
    seed: int = 0


FULL = Sizes(decode_frames=20, decode_sizes=((640, 480), (1280, 720), (1920, 1080)), verify_seconds=1.0,
             verify_revoked=100_000,
             gate_sizes=((640, 480), (1280, 720)), gate_frames=600, revocations=REVOCATIONS_TARGET,
             lookups=100_000, updates=UPDATES_TARGET, ledger_taps=1000, ingest_taps=100_000, clients=8,
             reservations=100, sync_gates=4, sync_taps=5_000, backlog=BACKLOG_TARGET)
QUICK = Sizes(decode_frames=1, decode_sizes=((640, 480), (1280, 720)), verify_seconds=0.1, verify_revoked=1000,
              gate_sizes=((1280, 720),), gate_frames=30, revocations=20_000, lookups=2000, updates=2000,
              ledger_taps=20, ingest_taps=500, clients=2, reservations=5, sync_gates=1, sync_taps=200,
              backlog=1000, startup_runs=3, video_clips=1, video_size=(640, 480), video_frames=24, site_lanes=(2,),
              site_taps=10, site_every_ms=50, console_taps=3000, console_groups=20, console_sites=20,
              console_samples=3, console_seconds=2.0)


def size_label(s: tuple[int, int]) -> str:
    return f"{s[0]}x{s[1]}"


def sizes_label(sizes: Sequence[tuple[int, int]]) -> str:
    return ",".join(size_label(s) for s in sizes)


@dataclass
class Results:
    sizes: Sizes
    machine: Machine
    started: dt.datetime
    decode_rows: list[decode_figures.Row] = field(default_factory=list)
    recommendation: decode_figures.Recommendation | None = None
    video_rows: list[video_bench.VideoRow] = field(default_factory=list)
    verify_rates: list[verify_bench.Rate] = field(default_factory=list)
    gate: list[gate_figures.SizeResult] = field(default_factory=list)
    ledger_rows: list[Row] = field(default_factory=list)
    ingest_rows: list[Row] = field(default_factory=list)
    console_rows: list[Row] = field(default_factory=list)
    sync_rows: list[Row] = field(default_factory=list)
    startup_rows: list[Row] = field(default_factory=list)
    site: list[site_bench.Propagation] = field(default_factory=list)
    qr: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (characters, version)
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


# -- commands that reproduce each figure ---------------------------------------------------------------------
def commands(s: Sizes) -> dict[str, str]:
    return {
        "decode": f"citypass bench decode --frames {s.decode_frames} --size {sizes_label(s.decode_sizes)} "
                  f"--decoders {','.join(DECODER_NAMES)} --seed {s.seed}",
        "verify": f"citypass bench verify --seconds {s.verify_seconds:g} --revoked {s.verify_revoked}",
        "gate": f"citypass bench gate --size {sizes_label(s.gate_sizes)} --frames {s.gate_frames} "
                f"--every {s.gate_every} --hold {s.gate_hold} --seed {s.seed} "
                f"--decoders {','.join(s.gate_decoders)}",
        "video": f"citypass bench video --clips {s.video_clips} --size {size_label(s.video_size)} "
                 f"--frames {s.video_frames} --decoders {','.join(s.gate_decoders)} --seed {s.seed}",
        "ledger": f"citypass bench ledger --revocations {s.revocations} --lookups {s.lookups} "
                  f"--updates {s.updates} --taps {s.ledger_taps}",
        "ingest": f"citypass bench ingest --taps {s.ingest_taps} --clients {s.clients} "
                  f"--reservations {s.reservations}",
        "console": f"citypass bench console --taps {s.console_taps} --groups {s.console_groups} "
                   f"--sites {s.console_sites} --samples {s.console_samples} --seconds {s.console_seconds:g}",
        "sync": f"citypass bench sync --gates {s.sync_gates} --taps {s.sync_taps} --backlog {s.backlog} "
                f"--workers {s.sync_workers}",
        "startup": f"citypass bench startup --runs {s.startup_runs}",
        "site": f"citypass bench site --lanes {','.join(str(n) for n in s.site_lanes)} --taps {s.site_taps} "
                f"--every {s.site_every_ms}",
        "qr": "pytest tests/test_credential_format.py -k fits",
        "all": "citypass bench all" + (" --quick" if s == QUICK else ""),
    }
