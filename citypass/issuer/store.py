"""The issuer's store: the SQLite implementation of :class:`citypass.issuer.repository.IssuerRepository`.

One file, ``HOME/issuer.db``, through sqlite-utils. Each group of tables has its own module under
:mod:`citypass.issuer.sqlite` (ledger, bookings, fleet, taps, access); this class puts them together and runs
the schema migrations on open, so an ``issuer.db`` from an older release upgrades in place.

Example::

    >>> import tempfile, pathlib
    >>> store = IssuerStore(pathlib.Path(tempfile.mkdtemp()) / "issuer.db")
    >>> store.revoke(bytes.fromhex("00112233"), at=1_800_000_000), store.ledger_seq()
    (True, 1)
    >>> store.close()
"""

from __future__ import annotations

from pathlib import Path

from citypass.issuer.records import StorageFull, StoredKey
from citypass.issuer.sqlite.access import AccessTables
from citypass.issuer.sqlite.benefits import BenefitTables
from citypass.issuer.sqlite.bookings import BookingTables
from citypass.issuer.sqlite.control import ControlTables
from citypass.issuer.sqlite.fleet import FleetTables
from citypass.issuer.sqlite.ledger import LedgerTables
from citypass.issuer.sqlite.migrations import JOURNEYS_VERSION, SCHEMA_VERSION, StoreSchemaError, migrate
from citypass.issuer.sqlite.taps import TapTables
from citypass.issuer.sqlite.wallet import WalletTables
from citypass.issuer.watch import rebuild_journeys

__all__ = ["SCHEMA_VERSION", "IssuerStore", "StorageFull", "StoreSchemaError", "StoredKey"]


class IssuerStore(ControlTables, LedgerTables, BookingTables, FleetTables, TapTables, AccessTables, WalletTables,
                  BenefitTables):
    """The issuer's repository over one SQLite file (safe to share between threads)."""

    def __init__(self, path: Path, *, max_bytes: int | None = None) -> None:
        super().__init__(path, max_bytes=max_bytes)
        #: The schema version the file had when this store opened it (before migrating).
        self.opened_at_version = migrate(self)
        if 0 < self.opened_at_version < JOURNEYS_VERSION:
            rebuild_journeys(self)  # journeys were not kept before: pair the stored taps once

    def schema_version(self) -> int:
        return int(self.get_meta("schema_version", "0") or 0)
