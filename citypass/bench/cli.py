"""``citypass bench …``: the project's benchmarks. Each prints figures measured on this machine.

Each benchmark's module loads when it runs (``citypass bench verify`` loads no OpenCV).
"""

from __future__ import annotations

import click

from citypass.clitools import LazyGroup

BENCHMARKS = {
    "all": "citypass.bench.all:all_command",
    "broker": "citypass.bench.broker:broker_command",
    "city": "citypass.bench.city:city_command",
    "cluster": "citypass.bench.cluster:cluster_command",
    "console": "citypass.bench.console:console_command",
    "decode": "citypass.bench.decode:decode_command",
    "gate": "citypass.bench.gate:gate_command",
    "ingest": "citypass.bench.ingest:ingest_command",
    "ledger": "citypass.bench.ledger:ledger_command",
    "site": "citypass.bench.site:site_command",
    "startup": "citypass.bench.startup:startup_command",
    "sync": "citypass.bench.sync:sync_command",
    "verify": "citypass.bench.verify:verify_command",
    "video": "citypass.bench.video:video_command",
}


@click.group(cls=LazyGroup, lazy=BENCHMARKS)
def bench() -> None:
    """Measure speed on this machine (figures, not pass/fail)."""
