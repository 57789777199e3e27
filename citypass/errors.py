"""The project's exceptions share one root, so a caller can tell *our* errors from a programming bug.

Every exception the project raises on purpose derives from :class:`CityPassError`, and most of them also
from the standard-library class that says what kind of problem it is — the mix-in keeps ``except
ValueError`` in a caller working, and says to a reader what sort of thing went wrong:

* :class:`InvalidInput` (a ``ValueError``): bad data from outside — a code, a config file, a request field,
  a snapshot, a setup code, a command-line value;
* :class:`NotFound` (a ``KeyError``): a named thing does not exist — a pass, a device, a tap;
* :class:`Conflict`: the request is valid but clashes with the current state — used already, full;
* :class:`Unavailable`: a resource is busy, missing or broken right now — trying later may work.

The edges translate them, and *only* them:

* the command line (:class:`citypass.cli.CityPass`) prints a ``CityPassError`` as one line ``Error: …`` with
  exit status 1 — the message is written for the person at the keyboard (an ``OSError``, the environment's
  error, is printed the same way). Anything else — a ``ValueError`` from a bug, a ``KeyError``, a
  ``TypeError`` — keeps its traceback, because it is ours to fix, not the user's;
* the issuer's HTTP API answers :class:`InvalidInput` with 422, :class:`NotFound` with 404,
  :class:`Conflict` with 409 and :class:`Unavailable` with 503, each with a JSON ``detail``; any other
  exception is a 500 whose traceback is logged.

    >>> issubclass(InvalidInput, ValueError) and issubclass(InvalidInput, CityPassError)
    True
    >>> try:
    ...     raise InvalidInput("gate_id: 'Gate 1' is not a device id")
    ... except ValueError as exc:           # callers that knew only ValueError still catch it
    ...     print(type(exc).__name__, exc)
    InvalidInput gate_id: 'Gate 1' is not a device id
"""

from __future__ import annotations


class CityPassError(Exception):
    """The root of every exception the project raises on purpose. Its message is meant for a person."""


class InvalidInput(CityPassError, ValueError):
    """Data from outside the program is malformed, out of range or untrusted (a user, a device, a file)."""


class NotFound(CityPassError, KeyError):
    """A named thing does not exist. ``str()`` gives the message (``KeyError`` would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Conflict(CityPassError):
    """A valid request that clashes with the current state (used already, exists already, full)."""


class Unavailable(CityPassError):
    """A resource is busy, missing or broken right now (a locked file, a full disk, a dead broker)."""


__all__ = ["CityPassError", "Conflict", "InvalidInput", "NotFound", "Unavailable"]
