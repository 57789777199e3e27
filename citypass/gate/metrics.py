"""Prometheus metrics of one gate (prometheus-client), in a registry of its own.

A registry per daemon instance (rather than the library's global one) keeps tests and benchmarks that
run several gates in one process from counting into each other. Counters end in ``_total``; the sync link's
state (connected, backlog, last acknowledgement, clock offset, ledger deltas applied and refused) is copied
in from the sync thread's status by :meth:`GateMetrics.observe_sync`; ``citypass_build_info`` carries the
software version. deploy/ holds the Grafana dashboard and Prometheus alert rules over these names
(``tests/test_deploy.py`` checks both against this registry and with ``promtool``).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


def software_version() -> str:
    try:
        return version("citypass")
    except PackageNotFoundError:
        return "unknown"

STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.25, 0.5, 1.0)


class GateMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter("citypass_decisions_total", "Decisions by outcome and reason",
                                 ["decision", "reason"], registry=r)
        self.stage_seconds = Histogram("citypass_stage_seconds", "Time spent per pipeline stage", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.frame_to_relay = Histogram("citypass_frame_to_relay_seconds",
                                        "From frame captured to relay energised", buckets=STAGE_BUCKETS, registry=r)
        self.frames = Counter("citypass_frames_total", "Frames processed", registry=r)
        self.fps = Gauge("citypass_camera_fps", "Camera frames per second (sliding window)", registry=r)
        self.camera_restarts = Counter("citypass_camera_restarts_total", "Camera reopens", registry=r)
        self._restarts_seen = 0
        self.camera_ok = Gauge("citypass_camera_ok", "1 when the camera delivers fresh frames", registry=r)
        self.ledger_age = Gauge("citypass_ledger_age_seconds", "Seconds since the ledger was last synced", registry=r)
        self.outbox_backlog = Gauge("citypass_outbox_backlog", "Taps and events not yet acknowledged", registry=r)
        self.barrier_events = Counter("citypass_barrier_events_total", "Barrier events by kind", ["event"],
                                      registry=r)
        self.fallbacks = Counter("citypass_decision_fallbacks_total", "Decisions replaced by the fallback",
                                 registry=r)
        self.budget_overruns = Counter("citypass_entry_budget_overruns_total",
                                       "Entries that took longer than the entry budget", registry=r)
        self.fire_alarm = Gauge("citypass_fire_alarm_active", "1 while the fire-alarm input frees the lane",
                                registry=r)
        self.build_info = Gauge("citypass_build_info", "Always 1; the labels say which software runs",
                                ["version", "python"], registry=r)
        self.build_info.labels(software_version(), platform.python_version()).set(1)
        # -- sync (set only where a sync thread runs) ---------------------------------------------------------
        self.sync_connected = Gauge("citypass_sync_connected", "1 while the MQTT link to the broker is up",
                                    registry=r)
        self.sync_backlog = Gauge("citypass_sync_backlog", "Events the sync thread has not had acknowledged",
                                  registry=r)
        self.sync_last_ack_age = Gauge("citypass_sync_last_ack_age_seconds",
                                       "Seconds since the issuer last acknowledged an upload", registry=r)
        self.sync_clock_offset = Gauge("citypass_sync_clock_offset_seconds",
                                       "This gate's clock minus the issuer's, as the sync thread estimates it",
                                       registry=r)
        self.deltas_applied = Counter("citypass_sync_deltas_applied_total",
                                      "Signed ledger deltas and snapshots applied", registry=r)
        self.deltas_refused = Counter("citypass_sync_deltas_refused_total",
                                      "Ledger updates refused (forged, replayed)", registry=r)
        self.uploads_acked = Counter("citypass_sync_events_acked_total", "Outbox events the issuer acknowledged",
                                     registry=r)
        self._sync_seen: dict[str, int] = {}

    def camera_restarted(self, restarts: int) -> None:
        """The camera's reopen count so far (a running total): the counter goes up by what is new."""
        if restarts > self._restarts_seen:
            self.camera_restarts.inc(restarts - self._restarts_seen)
        self._restarts_seen = max(self._restarts_seen, restarts)

    def _count(self, counter: Counter, key: str, total: int) -> None:
        seen = self._sync_seen.get(key, 0)
        if total > seen:
            counter.inc(total - seen)
        self._sync_seen[key] = max(seen, total)

    def observe_sync(self, state: Mapping[str, Any], now: float) -> None:
        """Copy the sync thread's status (:class:`citypass.sync.gate_sync.SyncState` as a dict) into the metrics."""
        self.sync_connected.set(1 if state.get("connected") else 0)
        if state.get("backlog") is not None:
            self.sync_backlog.set(state["backlog"])
        if state.get("clock_offset") is not None:
            self.sync_clock_offset.set(state["clock_offset"])
        if state.get("last_ack_at") is not None:
            self.sync_last_ack_age.set(max(0.0, now - state["last_ack_at"]))
        counters = state.get("counters") or {}
        self._count(self.deltas_applied, "applied", counters.get("deltas", 0) + counters.get("snapshots", 0))
        self._count(self.deltas_refused, "refused", counters.get("forged", 0) + counters.get("replayed", 0))
        self._count(self.uploads_acked, "acked", counters.get("acked", 0))
