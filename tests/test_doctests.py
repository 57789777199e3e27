"""The examples in docstrings are run: documentation that teaches must also be true.

One runner for every module of the installed package (``citypass`` and all its subpackages): a new
module with a ``>>>`` example is picked up without being listed anywhere.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import citypass


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(citypass.__path__, prefix="citypass."):
        spec = importlib.util.find_spec(info.name)
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        if origin is not None and origin.suffix == ".py" and ">>>" in origin.read_text(encoding="utf-8"):
            names.append(info.name)
    return sorted(names)


MODULES = _modules_with_examples()


def test_examples_were_found() -> None:
    packages = {name.split(".")[1] for name in MODULES}
    assert len(MODULES) >= 10, MODULES
    assert {"credential", "issuer", "gate", "sync", "firmware_hooks"} <= packages, packages


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
