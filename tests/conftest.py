"""Fixtures every test module can ask for by name: a :class:`~tests.helpers.codes.World` of keys and sites."""

from __future__ import annotations

import pytest

from tests.helpers.codes import World


@pytest.fixture(scope="session")
def world() -> World:
    return World()


@pytest.fixture
def fresh_world() -> World:
    return World()


@pytest.fixture(scope="session", autouse=True)
def scratch_unit_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`citypass provision enroll` writes the gate unit's network drop-in under $CITYPASS_UNIT_DIR: never into
    this machine's /etc/systemd/system (subprocesses inherit it too)."""
    import os

    os.environ["CITYPASS_UNIT_DIR"] = str(tmp_path_factory.mktemp("systemd-units"))
