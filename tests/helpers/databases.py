"""The issuer's two backends for tests: the embedded SQLite file and a PostgreSQL database of the test's own.

The ``issuer_database`` fixture (tests/conftest.py) is parametrised over both; a test asks it for a store
location with ``issuer_database()``: ``None`` (the home's SQLite file) or the URL of a fresh, empty PostgreSQL
database on the local server, dropped when the module's tests are done. Where no server answers, the
PostgreSQL half is skipped with the reason printed (pytest -ra); CITYPASS_TEST_POSTGRES names another server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from citypass.issuer.postgres.admin import DEFAULT_SERVER, create_database, drop_database, reachable

BACKENDS = ("sqlite", "postgresql")

NewDatabase = Callable[[], "str | None"]


def test_server() -> str:
    return os.environ.get("CITYPASS_TEST_POSTGRES", DEFAULT_SERVER)


class Databases:
    """Databases made for one module's tests, all dropped by :meth:`drop_all`."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.server = test_server()
        self.made: list[str] = []

    def unavailable(self) -> str | None:
        return reachable(self.server) if self.backend == "postgresql" else None

    def __call__(self) -> str | None:
        if self.backend == "sqlite":
            return None
        url = create_database(self.server, prefix="citypass_test")
        self.made.append(url)
        return url

    def drop_all(self) -> None:
        for url in self.made:
            drop_database(url, self.server)
        self.made.clear()


def query(store: object, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (``?`` placeholders) read straight from either backend's tables, for assertions on what
    is stored."""
    from citypass.issuer.postgres.store import PostgresStore
    from citypass.issuer.store import IssuerStore

    if isinstance(store, PostgresStore):
        return store.fetchall(sql.replace("?", "%s"), list(params))
    assert isinstance(store, IssuerStore)
    return [tuple(row) for row in store.conn.execute(sql, list(params)).fetchall()]
