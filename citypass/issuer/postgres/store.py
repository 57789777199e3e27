"""The issuer's store on PostgreSQL: :class:`PostgresStore`, an :class:`~citypass.issuer.repository.IssuerRepository`.

Chosen with ``citypass issuer init --database postgresql://…`` (the home then records the URL and every later
command uses it) or ``citypass issuer serve --database …``. Opening it runs the schema migrations, once, whatever
number of nodes open it at the same moment.
"""

from __future__ import annotations

from citypass.issuer.postgres.access import AccessTables
from citypass.issuer.postgres.benefits import BenefitTables
from citypass.issuer.postgres.bookings import BookingTables
from citypass.issuer.postgres.connection import POOL_MAX
from citypass.issuer.postgres.control import ControlTables
from citypass.issuer.postgres.fleet import FleetTables
from citypass.issuer.postgres.ledger import LedgerTables
from citypass.issuer.postgres.migrations import JOURNEYS_VERSION, SCHEMA_VERSION, migrate
from citypass.issuer.postgres.taps import TapTables
from citypass.issuer.postgres.wallet import WalletTables
from citypass.issuer.watch import rebuild_journeys

__all__ = ["SCHEMA_VERSION", "PostgresStore"]


class PostgresStore(ControlTables, BenefitTables, LedgerTables, BookingTables, FleetTables, TapTables, AccessTables,
                    WalletTables):
    """The issuer's repository over one PostgreSQL database (safe to share between threads)."""

    def __init__(self, url: str, *, pool_max: int = POOL_MAX, migrate_schema: bool = True) -> None:
        super().__init__(url, pool_max=pool_max)
        #: The schema version the database had when this store opened it (before migrating).
        try:
            self.opened_at_version = migrate(self) if migrate_schema else self.schema_version()
            if migrate_schema and 0 < self.opened_at_version < JOURNEYS_VERSION:
                rebuild_journeys(self)  # journeys were not kept before: pair the stored taps once
        except BaseException:
            self.close()  # a database this software cannot use: release the pool's connections and threads
            raise

    def schema_version(self) -> int:
        return int(self.get_meta("schema_version", "0") or 0)
