"""Which store an issuer home uses: the embedded SQLite file, or a PostgreSQL database shared by several nodes.

A home made by ``citypass issuer init`` keeps its store in ``HOME/issuer.db``; one made with
``--database postgresql://…`` records the URL in ``HOME/database.url`` instead, and every later command on the
home opens that database. ``--database`` on ``serve`` or ``migrate`` overrides what the home records (a node
whose home is a copy of the keys, pointed at the city's database).

    >>> is_postgres("postgresql://postgres@127.0.0.1/citypass"), is_postgres(None)
    (True, False)
"""

from __future__ import annotations

from citypass.errors import InvalidInput
from citypass.issuer.home import IssuerHome
from citypass.issuer.repository import IssuerRepository

SCHEMES = ("postgresql://", "postgres://")


class BackendError(InvalidInput):
    """A database address the issuer cannot use."""


def is_postgres(url: str | None) -> bool:
    return url is not None and url.startswith(SCHEMES)


def check_database(url: str | None) -> str | None:
    """``url`` when it names a backend this software has (None: the SQLite file); BackendError otherwise."""
    if url is not None and not is_postgres(url):
        raise BackendError(f"unsupported database {url.split('://')[0]!r}: give postgresql://USER@HOST:PORT/NAME "
                           "(or nothing, for the SQLite file in the home)")
    return url


def open_store(home: IssuerHome, database: str | None = None) -> IssuerRepository:
    """The store of ``home``: ``database`` if given, else the one the home records, else its SQLite file.
    Opening migrates the schema to this software's version."""
    url = check_database(database or home.database_url())
    if url is not None:
        from citypass.issuer.postgres.store import PostgresStore  # psycopg only where it is used

        return PostgresStore(url)
    from citypass.issuer.store import IssuerStore

    return IssuerStore(home.db_path)


def schema_versions(store: IssuerRepository) -> tuple[int, int]:
    """(version the store had when opened, version it has now) — what ``citypass issuer migrate`` reports."""
    now = int(store.get_meta("schema_version", "0") or 0)
    before = getattr(store, "opened_at_version", now)
    return int(before), now
