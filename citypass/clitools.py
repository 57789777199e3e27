"""Small helpers shared by the subcommand modules: option types and error reporting."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from citypass.timefmt import parse_time

F = TypeVar("F", bound=Callable[..., Any])


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


def friendly_errors(*error_types: type[BaseException]) -> Callable[[F], F]:
    """Turn the listed exception types into a one-line ``Error: …`` and exit status 1."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except error_types as exc:
                raise click.ClickException(str(exc)) from None

        return inner  # type: ignore[return-value]

    return wrap
