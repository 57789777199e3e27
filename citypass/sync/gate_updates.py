"""The gate's side of sync, downstream: signed ledger deltas applied in order, gaps closed, the issuer's clock.

:class:`LedgerFollower` is what :class:`citypass.sync.gate_sync.GateSync` does with each ledger delta and
time tick it receives (the rules are in docs/mqtt.md, "Signed, ordered, gap-free, down" and "Clock"):

* a delta is verified against the ledger's trust list first; a forged one is counted (``forged``) and
  logged, one not newer than the ledger is ignored (``replayed``), one that does not start at the ledger's
  sequence is a gap (``gaps``) and the gate catches up — over HTTP (deltas, else a snapshot) when it has an
  HTTP source, else by asking on its ``requests`` topic;
* a signed tick feeds the clock-offset estimate (and its alarm), raises the ledger's clock floor, and
  announces the issuer's sequence, so a gate that missed a delta notices within two ticks.

It runs on the sync thread, with the sync thread's own ledger connection; ``counters`` is the sync's own
dictionary (published in the gate's status) and ``report(name, level, **fields)`` its event log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import paho.mqtt.client as mqtt

from citypass.credential.delta import DeltaError, load_delta
from citypass.gate.ledger import GateLedger
from citypass.gate.ledger.connection import LedgerError
from citypass.gate.ledger.installer import install_in_child
from citypass.sync import codec, topics
from citypass.sync.clock import OffsetEstimator
from citypass.sync.endpoint import HttpLedgerSource

if TYPE_CHECKING:
    from citypass.sync.gate_sync import GateSyncConfig


class LedgerFollower:
    """Applies what comes down for one gate (see the module)."""

    def __init__(self, config: GateSyncConfig, fetcher: HttpLedgerSource | None, counters: dict[str, int],
                 report: Callable[..., None], estimator: OffsetEstimator) -> None:
        self.config, self.fetcher, self.counters = config, fetcher, counters
        self.report, self.estimator = report, estimator
        self.issuer_seq: int | None = None
        self._lagging_ticks = 0
        self._last_catch_up = -1e9

    def delta(self, client: mqtt.Client, ledger: GateLedger, payload: bytes) -> None:
        try:
            delta = load_delta(payload, ledger.trust)
        except DeltaError as exc:
            self.counters["forged"] += 1
            self.report("delta_rejected", "error", error=str(exc), ledger_seq=ledger.seq)
            return
        current = ledger.seq
        if current is not None and delta.seq <= current:
            self.counters["replayed"] += 1
            self.report("delta_replayed", "warning", base_seq=delta.base_seq, seq=delta.seq, ledger_seq=current)
            return
        if current is None or delta.base_seq != current:
            self.counters["gaps"] += 1
            self.report("delta_gap", "warning", base_seq=delta.base_seq, seq=delta.seq, ledger_seq=current)
            self.catch_up(client, ledger, force=True)
            return
        ledger.apply_delta(**delta.ledger_arguments())
        self.counters["deltas"] += 1
        self.report("delta_applied", base_seq=delta.base_seq, seq=delta.seq, revoked=len(delta.revoked),
                    unrevoked=len(delta.unrevoked), sites=delta.sites is not None,
                    site_updates=len(delta.site_updates))

    def tick(self, client: mqtt.Client, ledger: GateLedger, payload: bytes, received: float) -> None:
        try:
            tick = codec.verify_time(payload, ledger.trust)
        except codec.CodecError as exc:
            self.counters["forged"] += 1
            self.report("time_rejected", "error", error=str(exc))
            return
        was_alarm = self.estimator.alarm
        if self.estimator.add(tick.unix_ms / 1000, received):
            # The issuer's signed time is a lower bound of the true time: it raises the ledger's clock floor,
            # less the alarm's tolerance, so a gate whose clock is further behind judges codes at the floor
            # (flagged clock_untrusted) instead of at its wrong clock, while one within the tolerance is left
            # alone (its live codes are still judged by the freshness skew).
            ledger.raise_clock_floor(tick.unix_ms // 1000 - int(self.config.clock_alarm_s))
        if self.estimator.alarm != was_alarm:
            self.report("clock_alarm" if self.estimator.alarm else "clock_ok",
                        "error" if self.estimator.alarm else "info", offset_s=round(self.estimator.offset or 0, 3))
        self.issuer_seq = tick.ledger_seq
        # A delta and the tick announcing its seq race each other: only a lag two ticks long is a gap.
        self._lagging_ticks = self._lagging_ticks + 1 if tick.ledger_seq > (ledger.seq or -1) else 0
        if self._lagging_ticks >= 2:
            self._lagging_ticks = 0
            self.catch_up(client, ledger)

    def catch_up(self, client: mqtt.Client, ledger: GateLedger, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_catch_up < self.config.catch_up_interval_s:
            return
        self._last_catch_up = now
        seq = ledger.seq
        if self.fetcher is not None:
            try:
                self._http_catch_up(ledger)
                return
            except (httpx.HTTPError, DeltaError, LedgerError) as exc:
                self.report("catch_up_failed", "warning", error=str(exc))
        if seq is not None:
            client.publish(topics.gate_requests(self.config.device_id), codec.encode_request(seq), qos=1)

    def _http_catch_up(self, ledger: GateLedger) -> None:
        assert self.fetcher is not None
        for _ in range(1000):  # each delta carries up to 10,000 changes
            seq = ledger.seq
            if seq is None:
                self.fetch_snapshot(ledger)
                return
            try:
                data = self.fetcher.delta(seq)
            except LookupError:
                self.fetch_snapshot(ledger)
                return
            if data is None:
                return
            delta = load_delta(data, ledger.trust)
            ledger.apply_delta(**delta.ledger_arguments())
            self.counters["deltas"] += 1

    def fetch_snapshot(self, ledger: GateLedger) -> None:
        if self.fetcher is None:
            self.report("snapshot_unavailable", "error", detail="no HTTP ledger source configured")
            return
        try:  # verified, parsed and installed by a child process: see citypass.gate.ledger.installer
            snap = install_in_child(ledger.config, self.fetcher.snapshot_chunks(), self.config.root)
        except (httpx.HTTPError, OSError, LedgerError) as exc:
            self.report("snapshot_failed", "error", error=str(exc))
            return
        self.counters["snapshots"] += 1
        self.report("snapshot_installed", seq=snap.seq, revocations=snap.revocations)
