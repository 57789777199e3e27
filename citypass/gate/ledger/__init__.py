"""The gate's durable offline ledger (SQLite): what the decision core reads, and every tap recorded.

Example::

    from citypass.gate.ledger import GateLedger
    ledger = GateLedger.open("/var/lib/citypass/ledger.sqlite3", root=pinned_root)
    ledger.load_snapshot(snapshot_bytes)
    decision = decide(text, ledger, ledger.context(), now)
    tap = ledger.record(decision, ledger.context(), {"decided": time.time()})

See :mod:`citypass.gate.ledger.store` for the tour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from citypass.lazy import lazy_exports

if TYPE_CHECKING:
    from citypass.gate.ledger.config import LedgerConfig
    from citypass.gate.ledger.connection import (
        LedgerBusy,
        LedgerError,
        LedgerSchemaError,
        LedgerStorageError,
        SnapshotRefused,
        TapNotFound,
    )
    from citypass.gate.ledger.migrations import SCHEMA_VERSION
    from citypass.gate.ledger.outbox import OutboxRow
    from citypass.gate.ledger.store import Checkpoint, GateIdentity, GateLedger, Integrity, SiteNotConfigured
    from citypass.gate.ledger.taps import Tap
else:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "config": ["LedgerConfig"],
        "connection": [
            "LedgerBusy", "LedgerError", "LedgerStorageError", "LedgerSchemaError", "SnapshotRefused", "TapNotFound",
        ],
        "migrations": ["SCHEMA_VERSION"],
        "outbox": ["OutboxRow"],
        "store": ["Checkpoint", "GateIdentity", "GateLedger", "Integrity", "SiteNotConfigured"],
        "taps": ["Tap"],
    })

__all__ = [
    "SCHEMA_VERSION",
    "Checkpoint",
    "GateIdentity",
    "GateLedger",
    "Integrity",
    "LedgerBusy",
    "LedgerConfig",
    "LedgerError",
    "LedgerSchemaError",
    "LedgerStorageError",
    "OutboxRow",
    "SiteNotConfigured",
    "SnapshotRefused",
    "Tap",
    "TapNotFound",
]
