"""The ``citypass`` command: the one place that wires every subsystem's commands together.

Each group is named here by where it lives and imported only when it runs (:class:`~citypass.clitools.LazyGroup`):
``citypass hooks safe-state`` loads the hooks and the pins, not OpenCV, FastAPI or paho-mqtt. Two commands
compose subsystems and so live in the wiring layer (:mod:`citypass.wiring`); they join their group here.
"""

from __future__ import annotations

import click

from citypass.clitools import LazyGroup, load_command
from citypass.errors import CityPassError

#: Every top-level command: name → ``module:attribute``.
COMMANDS = {
    "bench": "citypass.bench.cli:bench",
    "broker": "citypass.sync.cli:broker",
    "code": "citypass.codecli:code",
    "demo": "citypass.demo:demo",
    "gate": "citypass.gate.cli:gate",
    "holder": "citypass.holder.cli:holder",
    "hooks": "citypass.firmware_hooks.cli:hooks",
    "issuer": "citypass.issuer.cli:issuer",
    "partner": "citypass.partner.cli:partner",
    "provision": "citypass.provisioning.cli:provision",
    "qr": "citypass.codecli:qr_group",
    "selftest": "citypass.provisioning.cli:selftest",
}

#: Commands of the wiring layer that join a subsystem's group: group → {name: ``module:attribute``}.
COMPOSED = {
    "gate": {"run": "citypass.wiring.gate:run"},
    "issuer": {"serve": "citypass.wiring.issuer:serve",
               "console-screenshots": "citypass.city.console_shots:console_screenshots"},
}


class CityPass(LazyGroup):
    """The root group: loads groups lazily, adds the composed commands, and reports the project's own errors
    (:class:`~citypass.errors.CityPassError`, whose messages are written for the person at the keyboard) and
    the environment's (``OSError``: a missing file, a permission) as one ``Error: …`` line, exit status 1.
    Anything else — a ``ValueError`` or ``KeyError`` from a bug — keeps its traceback."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            group = load_command(self.lazy[cmd_name])
            for name, target in COMPOSED.get(cmd_name, {}).items():
                assert isinstance(group, click.Group)
                if isinstance(group, LazyGroup):
                    group.add_lazy(name, target)
                else:
                    group.add_command(load_command(target), name)
            self.add_command(group, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (CityPassError, OSError) as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=CityPass, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"],
                                                             "max_content_width": 100})
@click.version_option(package_name="citypass")
def cli() -> None:
    """City Pass gate appliance: issue, show, check and measure City Pass codes.

    Start with `citypass issuer init --home DIR --site west-lake`, then `citypass issuer mint …`.
    """


def main() -> None:
    cli(prog_name="citypass")
