"""A real Mosquitto with enrolled gates and an issuer (:class:`~citypass.bench.syncworld.SyncWorld`), and the two
ends of sync built over it with test-friendly timings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from citypass.bench.syncworld import SyncWorld
from citypass.sync.gate_sync import GateSync, GateSyncConfig
from citypass.sync.issuer_sync import IssuerSync


@pytest.fixture
def world(tmp_path: Path) -> Iterator[SyncWorld]:
    w = SyncWorld(tmp_path)
    try:
        yield w
    finally:
        w.close()


def gate_sync(world: SyncWorld, gate: str = "gate-a", **kw: object) -> GateSync:
    options: dict[str, object] = {"ack_timeout_s": 2.0, "status_interval_s": 0.5, "catch_up_interval_s": 0.5}
    fetcher = kw.pop("fetcher", None)
    clock = kw.pop("clock", time.time)
    options.update(kw)
    config = GateSyncConfig(device_id=gate, ledger_path=world.gate_ledger(gate), root=world.root, site=1,
                            **options)  # type: ignore[arg-type]
    return GateSync(world.endpoint(gate), config, fetcher=fetcher, clock=clock).start()  # type: ignore[arg-type]


def issuer_sync(world: SyncWorld, workers: int = 1) -> IssuerSync:
    """Not started: ``with issuer_sync(world) as s:`` starts and stops it."""
    return IssuerSync(world.issuer, world.endpoint, workers=workers, group="g7x2k", tick_s=0.2, poll_s=0.05)
