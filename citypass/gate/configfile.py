"""Reading the gate's TOML config file, and saying clearly what is wrong with it.

:func:`citypass.gate.config.load_config` reads the whole file into :class:`~citypass.gate.config.GateConfig`.
A firmware hook that only parks the barrier reads just the part it needs (:func:`read_barrier`): the hook
that protects people must work even when a section it does not use — the camera, the sync — is broken, and
it must not wait for models it does not use to load.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "gate.toml"
    >>> _ = path.write_text('pins = "mock"\\n[barrier]\\nrelay_pin = 5\\n[camera]\\nfps = "broken"\\n')
    >>> pins, barrier = read_barrier(path)
    >>> pins, barrier.relay_pin, barrier.fail_mode
    ('mock', 5, 'fail_secure')
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import ValidationError

from citypass.errors import InvalidInput
from citypass.gate.barrier.config import BarrierConfig

Pins = Literal["native", "mock"]


class ConfigError(InvalidInput):
    """A configuration file that cannot be used; the message names every bad field."""


def read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML as a dict; :class:`ConfigError` naming the file when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def problems(path: Path, exc: ValidationError, prefix: str = "") -> ConfigError:
    """One :class:`ConfigError` naming every field pydantic refused, as ``section.key: message``."""
    found = "; ".join(f"{prefix}{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
    return ConfigError(f"{path}: {found}")


def read_barrier(path: Path) -> tuple[Pins, BarrierConfig]:
    """Only what parking the barrier needs: ``pins`` and the ``[barrier]`` table (validated as strictly as the
    daemon validates them; other sections are not looked at)."""
    data = read_toml(path)
    pins = data.get("pins", "native")
    if pins not in ("native", "mock"):
        raise ConfigError(f"{path}: pins: must be 'native' or 'mock', not {pins!r}")
    try:
        barrier = BarrierConfig.model_validate(data.get("barrier", {}))
    except ValidationError as exc:
        raise problems(path, exc, "barrier.") from None
    return cast(Pins, pins), barrier
