"""The house around the code: one installed name, layers that hold, and a start-up that loads only what it needs.

* the import contract in ``pyproject.toml`` (``[tool.importlinter]``) is kept, and a wrong-way import — even
  one inside a function — breaks it;
* the old top-level names (``import gate…``) are refused by the lint rule;
* the packages whose ``__init__`` exports lazily (:mod:`citypass.lazy`) name the same things for the type
  checker as at run time;
* a firmware hook that only drives pins loads no camera, decoder, MQTT, HTTP or terminal library;
* a wheel built from the tree installs exactly one top-level name: ``citypass``.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "citypass"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
RUFF = Path(sys.executable).parent / "ruff"
OLD_NAMES = ("bench", "credential", "firmware_hooks", "gate", "holder", "issuer", "provisioning", "sync")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter with the project's contracts over the ``citypass`` package found in ``root``."""
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_import_contract_is_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "wrong_import", "contract"), [
    # the gate must never know the issuer: a function-level import counts
    ("gate/daemon.py", "def _peek():\n    from citypass.issuer import service  # noqa\n", "Layers"),
    # the decision core stays pure
    ("gate/decision.py", "import sqlite3  # noqa\n", "The decision core is pure"),
    # the gate side of sync must not reach the issuer side
    ("sync/gate_sync.py", "from citypass.sync import issuer_sync  # noqa\n", "Sync: the gate side"),
])
def test_a_wrong_way_import_breaks_the_contract(tmp_path: Path, module: str, wrong_import: str, contract: str) -> None:
    copy = tmp_path / "citypass"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text(encoding="utf-8") + "\n\n" + wrong_import, encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
    assert str(PACKAGE) not in result.stdout  # it read the copy, not the tree


def test_old_top_level_names_are_refused_by_the_lint_rule(tmp_path: Path) -> None:
    source = tmp_path / "old.py"
    source.write_text("".join(f"import {name}.x\n" for name in OLD_NAMES) + "def f():\n    from gate import y\n")
    result = subprocess.run([str(RUFF), "check", "--config", str(ROOT / "pyproject.toml"), "--select", "TID251",
                             "--output-format", "concise", str(source)],
                            capture_output=True, text=True, timeout=60, check=False)
    refused = [line for line in result.stdout.splitlines() if "TID251" in line]
    assert len(refused) == len(OLD_NAMES) + 1, result.stdout


def _lazy_names(init: Path) -> tuple[set[str], set[str]]:
    """The names a lazily exporting ``__init__`` gives the type checker, and the names it exports at run time."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    checked: set[str] = set()
    runtime: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    checked |= {alias.asname or alias.name for alias in stmt.names}
            for stmt in node.orelse:
                call = stmt.value if isinstance(stmt, ast.Assign) else None
                if isinstance(call, ast.Call) and isinstance(call.args[1], ast.Dict):
                    for names in call.args[1].values:
                        assert isinstance(names, ast.List)
                        runtime |= {str(ast.literal_eval(n)) for n in names.elts}
    return checked, runtime


LAZY_PACKAGES = sorted(p.parent for p in PACKAGE.rglob("__init__.py") if "lazy_exports(" in p.read_text("utf-8"))


def test_lazy_packages_were_found() -> None:
    assert {p.relative_to(PACKAGE).as_posix() for p in LAZY_PACKAGES} >= {"credential", "gate/camera",
                                                                         "gate/decoders", "gate/ledger"}


@pytest.mark.parametrize("package", LAZY_PACKAGES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_lazy_exports_name_the_same_things_for_the_type_checker(package: Path) -> None:
    checked, runtime = _lazy_names(package / "__init__.py")
    assert checked and checked == runtime
    # A submodule loaded later would replace an export of the same name in the package.
    submodules = {p.stem for p in package.glob("*.py")} | {p.name for p in package.iterdir() if p.is_dir()}
    assert not runtime & submodules
    name = "citypass." + package.relative_to(PACKAGE).as_posix().replace("/", ".")
    module = __import__(name, fromlist=["__all__"])
    assert set(module.__all__) >= runtime
    for export in sorted(runtime):
        assert getattr(module, export) is not None


HEAVY = ("cv2", "numpy", "zxingcpp", "pyzbar", "paho", "fastapi", "starlette", "uvicorn", "rich", "httpx",
         "sqlite_utils", "segno")


def test_the_safe_state_hook_loads_no_heavy_backend(tmp_path: Path) -> None:
    config = tmp_path / "gate.toml"
    config.write_text('gate_id = "hook-1"\nsite = "west-lake"\nroot_key = "root.pub"\npins = "mock"\n'
                      '[ledger]\npath = "ledger.sqlite3"\n[camera]\nsource = "dir:frames"\n')
    probe = ("import json, sys\n"
             "from citypass.cli import main\n"
             f"sys.argv = ['citypass', 'hooks', 'safe-state', '--config', {str(config)!r}]\n"
             "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
             "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), result.stdout + result.stderr
    assert "relay in the safe state" in result.stdout
    loaded = {m.split(".")[0] for m in report["modules"]}
    assert "gpiozero" in loaded and "citypass" in loaded  # the probe did run the hook
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_whole_gate_config_loads_without_opencv_numpy_or_the_ledger(tmp_path: Path) -> None:
    config = tmp_path / "gate.toml"
    config.write_text('gate_id = "g-1"\nsite = "west-lake"\nroot_key = "root.pub"\n[ledger]\npath = "l.sqlite3"\n'
                      '[camera]\nsource = "/dev/video0"\n')
    probe = ("import json, sys\n"
             "from citypass.gate.config import load_config\n"
             f"cfg = load_config(__import__('pathlib').Path({str(config)!r}))\n"
             "print(json.dumps({'decoder': cfg.decoder, 'modules': sorted(sys.modules)}))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    loaded = {m.split(".")[0] for m in report["modules"]}
    assert report["decoder"] == "retry" and "pydantic" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "citypass.gate.ledger.store" not in report["modules"]


@pytest.mark.slow
def test_a_wheel_installs_only_the_citypass_name(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("citypass-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"citypass"}, tops
    assert "citypass/gate/decision.py" in names and "citypass/sync/gate_sync.py" in names
    assert not [n for n in names if n.startswith("tests/")]
    # the visitors' pages and texts are package data: every built asset and compiled catalog is in the wheel
    folders = ("citypass/gate/screen/static", "citypass/issuer/wallet/static", "citypass/credential/locale")
    shipped = [p.relative_to(ROOT).as_posix() for folder in folders for p in (ROOT / folder).rglob("*") if p.is_file()]
    assert len(shipped) >= 14 and not set(shipped) - set(names), set(shipped) - set(names)


def test_test_modules_share_helpers_only_through_tests_helpers() -> None:
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith(("tests.test_", "tests.conftest")):
                offenders.append(f"{path.name}: from {module} import …")
    assert not offenders, offenders
