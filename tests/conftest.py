"""Fixtures every test module can ask for by name: a :class:`~tests.helpers.codes.World` of keys and sites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.codes import World
from tests.helpers.databases import BACKENDS, Databases


@pytest.fixture(scope="session")
def world() -> World:
    return World()


@pytest.fixture
def fresh_world() -> World:
    return World()


def _databases(backend: str) -> Iterator[Databases]:
    databases = Databases(backend)
    reason = databases.unavailable()
    if reason is not None:
        pytest.skip(reason)
    try:
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture(scope="module", params=BACKENDS)
def issuer_database(request: pytest.FixtureRequest) -> Iterator[Databases]:
    """Run the test on each issuer backend: call it for a store location (None: SQLite; else a fresh PostgreSQL
    database's URL, dropped after the module)."""
    yield from _databases(request.param)


@pytest.fixture
def pg_databases() -> Iterator[Databases]:
    """PostgreSQL databases of the test's own (skipped, with the reason, where no server answers)."""
    yield from _databases("postgresql")


@pytest.fixture(scope="session", autouse=True)
def scratch_unit_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`citypass provision enroll` writes the gate unit's network drop-in under $CITYPASS_UNIT_DIR: never into
    this machine's /etc/systemd/system (subprocesses inherit it too)."""
    import os

    os.environ["CITYPASS_UNIT_DIR"] = str(tmp_path_factory.mktemp("systemd-units"))
