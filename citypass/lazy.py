"""Lazy package exports (PEP 562): ``from citypass.gate.ledger import GateLedger`` works, but importing the
package does not import every module behind its names.

A package that re-exports the names of its modules would otherwise load all of them as soon as any one of
its modules is imported — ``citypass.gate.ledger.config`` (a pydantic model) would pull in sqlite-utils with
the ledger's store, and ``citypass.gate.camera.config`` would pull in OpenCV. A hook that only drives pins
must not pay for that. So such a package's ``__init__`` names its exports twice: once under
``TYPE_CHECKING`` for the type checker (which then checks every import of them, as it would a plain
import), and once as a table for :func:`lazy_exports`, which loads each module on first use. A test checks
that the two lists agree.

    >>> getattr_, dir_ = lazy_exports("citypass.credential", {"timefmt": ["parse_time", "format_time"]})
    >>> getattr_("parse_time").__name__
    'parse_time'
    >>> getattr_("nothing")
    Traceback (most recent call last):
    ...
    AttributeError: module 'citypass.credential' has no attribute 'nothing'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(package: str, modules: Mapping[str, Iterable[str]],
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``modules`` maps each submodule (relative to ``package``)
    to the names it exports. A loaded name is cached in the package, so the lookup runs once per name."""
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
