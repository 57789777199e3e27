"""``citypass bench …``: the project's benchmarks. Each prints figures measured on this machine."""

from __future__ import annotations

import click

from citypass.bench.all import all_command
from citypass.bench.decode import decode_command
from citypass.bench.gate import gate_command
from citypass.bench.ingest import ingest_command
from citypass.bench.ledger import ledger_command
from citypass.bench.sync import sync_command
from citypass.bench.verify import verify_command


@click.group()
def bench() -> None:
    """Measure speed on this machine (figures, not pass/fail)."""


bench.add_command(verify_command)
bench.add_command(decode_command)
bench.add_command(gate_command)
bench.add_command(ledger_command)
bench.add_command(ingest_command)
bench.add_command(sync_command)
bench.add_command(all_command)
