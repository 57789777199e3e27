"""Typed configuration of the gate's durable ledger (one SQLite file per gate).

Example::

    >>> cfg = LedgerConfig(path="/var/lib/citypass/ledger.sqlite3")
    >>> cfg.synchronous, cfg.busy_timeout_ms
    ('FULL', 50)
    >>> cfg.check_replay_retention(window_s=30, skew_s=10)  # fine: 120 s > 30 + 2 × 10
    >>> LedgerConfig(path="x.db", synchronus="NORMAL")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for LedgerConfig
    ...

Unknown keys are rejected so that a typo in a technician's config fails at start-up instead of silently
running with the default. Why each default is what it is:

* ``synchronous="FULL"``: the daemon energises the relay only after :meth:`GateLedger.record` returns.
  In WAL mode ``NORMAL`` survives a killed *process* but not a power cut: the last commits can roll
  back after the WAL was not yet fsynced, so a visitor who walked through would have an un-burned
  ticket. ``FULL`` fsyncs the WAL on every commit; ``citypass bench ledger`` measures what it costs
  (a gate records one tap per ~2.4 s, so even a slow SD card has headroom).
* ``busy_timeout_ms=50``: a decision must never hang on a lock. Reads never wait in WAL mode; a write
  that cannot get the lock within this time raises :class:`citypass.gate.ledger.LedgerBusy`, which the daemon
  maps to its fallback policy instead of holding a visitor at the barrier.
* ``replay_retention_s=120``: a dynamic presentation can be accepted up to ``window_s + skew_s`` after
  it was generated and seen as early as ``skew_s`` before; keeping it for longer than
  ``window_s + 2 × skew_s`` (50 s with the defaults) covers every instant it could be replayed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from citypass.errors import InvalidInput


class LedgerConfig(BaseModel):
    """Where the ledger lives and how hard it holds on to what it records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(
        default=Path("/var/lib/citypass/ledger.sqlite3"),
        description=(
            "The SQLite file (created, and migrated to the current schema, on first open). The WAL and "
            "shared-memory files live beside it, so the directory must be writable."
        ),
    )
    synchronous: Literal["NORMAL", "FULL", "EXTRA"] = Field(
        default="FULL",
        description=(
            "SQLite PRAGMA synchronous for every commit. FULL (default) makes a recorded tap survive a "
            "power cut; NORMAL survives only a crashed process. OFF is not offered."
        ),
    )
    busy_timeout_ms: int = Field(
        default=50,
        ge=0,
        le=5000,
        description=(
            "How long a write waits for another writer's lock before raising LedgerBusy. Keep it far "
            "below the decision budget: the daemon falls back rather than wait."
        ),
    )
    replay_retention_s: int = Field(
        default=120,
        ge=1,
        description=(
            "How long a dynamic presentation stays in the replay cache. Must exceed the verify policy's "
            "window_s + 2 × skew_s, or a copied presentation could be accepted after it was pruned."
        ),
    )
    outbox_retention_days: int = Field(
        default=14,
        ge=1,
        description=(
            "How long outbox rows the issuer has acknowledged, and the taps they describe, are kept "
            "(for local diagnosis). Unacknowledged rows are never deleted, however old."
        ),
    )

    def check_replay_retention(self, window_s: int, skew_s: int) -> None:
        """Raise :class:`ValueError` when the replay cache would forget a presentation that a gate with
        this freshness window and clock skew could still accept."""
        needed = window_s + 2 * skew_s
        if self.replay_retention_s <= needed:
            raise InvalidInput(
                f"replay_retention_s={self.replay_retention_s} must exceed window_s + 2 × skew_s = {needed}"
            )
