"""Homes are 0700 and the files in them 0600 whatever the umask: a gate's ledger (taps, outbox) with its WAL, an
issuer's store with its WAL, the issuer home — made here under umask 022, as a technician working as root would."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from citypass.gate.ledger import GateLedger
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer
from tests.helpers.codes import NOW


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_issuer_home_and_its_store_with_its_wal_are_private(tmp_path: Path, umask_022: None) -> None:
    home = tmp_path / "issuer"
    issuer = Issuer.init(IssuerHome(home), [("west-lake", "scenic")], now=NOW)
    try:
        issuer.store.revoke(b"\x01" * 8, NOW)  # a write: the WAL and its index exist now
        files = [home / "issuer.db", home / "issuer.db-wal", home / "issuer.db-shm"]
        assert all(f.exists() for f in files)
        assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
        assert oct(mode(home)) == "0o700" and oct(mode(home / "keys")) == "0o700"
    finally:
        issuer.close()


def test_a_gate_ledger_with_its_wal_is_private_and_an_old_one_is_tightened(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "ledger.sqlite3"
    with GateLedger.open(path) as ledger:
        ledger.append_events([("tap", "t-1", {"gate_id": "g"}, 0, 1000)])
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
    os.chmod(path, 0o644)  # made by an older release
    with GateLedger.open(path):
        assert oct(mode(path)) == "0o600"
