"""Create and drop whole databases on a PostgreSQL server: what tests and ``citypass bench city`` do to get a
database of their own (``CREATE DATABASE`` cannot run inside a transaction, so these use their own
autocommit connection to the server's maintenance database).

    >>> database_url("postgresql://postgres@127.0.0.1:5432/postgres", "citypass_t1")
    'postgresql://postgres@127.0.0.1:5432/citypass_t1'
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

#: The local server the tests and benches use (trust auth), when CITYPASS_TEST_POSTGRES does not say otherwise.
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database replaced by ``name``."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def reachable(server_url: str = DEFAULT_SERVER, timeout_s: int = 3) -> str | None:
    """None when the server answers; otherwise why not (for a test's skip reason)."""
    try:
        with psycopg.connect(server_url, connect_timeout=timeout_s):
            return None
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {server_url}: {exc}".strip()


def create_database(server_url: str = DEFAULT_SERVER, prefix: str = "citypass") -> str:
    """Create an empty database with a fresh random name; its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    if not _NAME.match(name):
        raise ValueError(f"not a database name: {name!r}")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(server_url, name)


def drop_database(url: str, server_url: str = DEFAULT_SERVER) -> None:
    """Drop the database ``url`` names, ending the sessions still connected to it."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
