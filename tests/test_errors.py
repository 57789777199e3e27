"""One exception root: the project's own errors reach people as messages, a bug keeps its traceback.

* every exception class the project defines derives from :class:`~citypass.errors.CityPassError`;
* the command line prints a ``CityPassError`` (or an ``OSError``) as one ``Error: …`` line, and lets a plain
  ``ValueError`` — a bug — through with its traceback;
* the issuer's API answers ``InvalidInput`` with 422 and so on, and a plain ``ValueError`` with a JSON 500
  whose traceback is logged once.
"""

from __future__ import annotations

import ast
import importlib
import logging
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from citypass.cli import cli
from citypass.errors import CityPassError, Conflict, InvalidInput, NotFound, Unavailable
from citypass.issuer.api import create_app
from citypass.issuer.api.server import BackgroundServer
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer

PACKAGE = Path(__file__).resolve().parent.parent / "citypass"


def _exception_classes() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = "citypass." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if node.name.startswith("_") if isinstance(node, ast.ClassDef) else True:
                continue  # private classes are control flow inside a module, never raised to a caller
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id in {
                        "CityPassError", "InvalidInput", "NotFound", "Conflict", "Unavailable"}) for b in node.bases):
                found.append(f"{module}.{node.name}")
    return found


EXCEPTIONS = _exception_classes()


def test_exception_classes_were_found() -> None:
    assert len(EXCEPTIONS) >= 25, EXCEPTIONS


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_every_project_exception_has_the_one_root(name: str) -> None:
    module, _, cls_name = name.rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    assert issubclass(cls, CityPassError), f"{name} derives from {cls.__mro__[1:]} but not CityPassError"


def test_the_mix_ins_keep_callers_that_knew_the_builtins_working() -> None:
    assert issubclass(InvalidInput, ValueError) and issubclass(NotFound, KeyError)
    assert str(NotFound("no pass 00ff")) == "no pass 00ff"  # KeyError would quote it


# -- the command line --------------------------------------------------------------------------------------
@pytest.fixture
def boom() -> Iterator[list[BaseException]]:
    """A ``citypass boom`` command that raises whatever the test puts in the list."""
    raised: list[BaseException] = []

    @click.command("boom")
    def command() -> None:
        raise raised[0]

    cli.add_command(command)
    try:
        yield raised
    finally:
        cli.commands.pop("boom")


@pytest.mark.parametrize("error", [InvalidInput("gate_id: 'Gate 1' is not a device id"), NotFound("no device g-1"),
                                   Conflict("enrollment used already"), Unavailable("ledger is locked"),
                                   FileNotFoundError(2, "No such file or directory")])
def test_the_cli_prints_our_errors_as_one_line(boom: list[BaseException], error: BaseException) -> None:
    boom.append(error)
    result = CliRunner().invoke(cli, ["boom"])
    assert result.exit_code == 1
    assert result.output == f"Error: {error}\n"


def test_the_cli_keeps_the_traceback_of_a_bug(boom: list[BaseException]) -> None:
    boom.append(ValueError("a bug, not the user's mistake"))
    result = CliRunner().invoke(cli, ["boom"])
    assert result.exit_code == 1
    assert "Error:" not in result.output
    assert isinstance(result.exception, ValueError)  # not turned into a ClickException


# -- the issuer's API --------------------------------------------------------------------------------------
def test_the_api_answers_a_bug_with_a_logged_500_and_our_errors_with_their_status(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    issuer = Issuer.init(IssuerHome(tmp_path / "iss"), [("west-lake", "scenic")], now=1_800_000_000)
    app = create_app(issuer, clock=lambda: 1_800_000_000)
    errors: dict[str, Exception] = {"bug": ValueError("x must be positive"), "invalid": InvalidInput("bad hours"),
                                    "missing": NotFound("no venue 7"), "busy": Unavailable("store locked")}

    def fail(kind: str) -> None:
        raise errors[kind]

    app.add_api_route("/test/fail/{kind}", fail, methods=["GET"])
    caplog.set_level(logging.ERROR, logger="citypass.issuer.api")
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as client:
        statuses = {kind: client.get(f"/test/fail/{kind}") for kind in errors}
        assert client.get("/healthz").status_code == 200  # the server survived
    assert {k: r.status_code for k, r in statuses.items()} == {"bug": 500, "invalid": 422, "missing": 404, "busy": 503}
    assert statuses["bug"].json() == {"detail": "internal error: the issuer logged it; please report it"}
    assert statuses["invalid"].json() == {"detail": "bad hours"}
    logged = [r for r in caplog.records if r.name == "citypass.issuer.api"]
    assert len(logged) == 1 and "/test/fail/bug" in logged[0].getMessage()
    assert logged[0].exc_info is not None and isinstance(logged[0].exc_info[1], ValueError)
    issuer.close()
