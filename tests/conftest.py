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
