"""The ``citypass`` command: the one place that wires every subsystem's commands together."""

from __future__ import annotations

import click

from citypass.bench.cli import bench
from citypass.codecli import code, qr_group
from citypass.demo import demo
from citypass.firmware_hooks.cli import hooks
from citypass.gate.cli import gate
from citypass.holder.cli import holder
from citypass.issuer.cli import issuer
from citypass.provisioning.cli import provision, selftest
from citypass.sync.cli import broker


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="citypass")
def cli() -> None:
    """City Pass gate appliance: issue, show, check and measure City Pass codes.

    Start with `citypass issuer init --home DIR --site west-lake`, then `citypass issuer mint …`.
    """


for group in (demo, issuer, holder, code, qr_group, gate, bench, broker, hooks, provision, selftest):
    cli.add_command(group)


def main() -> None:
    cli(prog_name="citypass")
