"""Helpers shared by the command modules: lazily loaded command groups and option types.

``citypass`` has a dozen command groups whose modules pull in OpenCV, FastAPI, paho-mqtt or rich; a
firmware hook run by systemd after a crash (``citypass hooks safe-state``) needs none of them, and every
millisecond before it re-drives the pins is a millisecond the barrier is not in its safe state. So groups
load their subcommands on first use (:class:`LazyGroup`, click's documented pattern): the program imports
only the module of the command that runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from citypass.credential.timefmt import parse_time


class LazyGroup(click.Group):
    """A :class:`click.Group` whose subcommands are named ``"module:attribute"`` and imported when first used.

    ``--help`` lists them all (and so imports them all, to read their short help); running one imports
    only its own module.

        >>> group = LazyGroup("hooks", lazy={"safe-state": "citypass.firmware_hooks.cli:safe_state"})
        >>> group.list_commands(click.Context(group))
        ['safe-state']
    """

    def __init__(self, *args: Any, lazy: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = dict(lazy or {})

    def add_lazy(self, name: str, target: str) -> None:
        """Add the subcommand ``name``, to be imported from ``"module:attribute"`` when first used."""
        self.lazy[name] = target

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(load_command(self.lazy[cmd_name]), cmd_name)
        return super().get_command(ctx, cmd_name)


def load_command(target: str) -> click.Command:
    """Import ``"module:attribute"`` and return it, checking that it is a click command."""
    module, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


class TimeParam(click.ParamType):  # type: ignore[type-arg]
    """An ISO 8601 time on the command line, converted to Unix seconds (naive = UTC+08:00)."""

    name = "ISO-TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


ISO_TIME = TimeParam()
