"""Prometheus metrics of one gate (prometheus-client), in a registry of its own.

A registry per daemon instance (rather than the library's global one) keeps tests and benchmarks that
run several gates in one process from counting into each other.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.camera_restarts = Gauge("citypass_camera_restarts", "Camera reopen count", registry=r)
        self.camera_ok = Gauge("citypass_camera_ok", "1 when the camera delivers fresh frames", registry=r)
        self.ledger_age = Gauge("citypass_ledger_age_seconds", "Seconds since the ledger was last synced", registry=r)
        self.outbox_backlog = Gauge("citypass_outbox_backlog", "Taps and events not yet acknowledged", registry=r)
        self.barrier_events = Counter("citypass_barrier_events_total", "Barrier events by kind", ["event"],
                                      registry=r)
        self.fallbacks = Counter("citypass_decision_fallbacks_total", "Decisions replaced by the fallback",
                                 registry=r)
        self.budget_overruns = Counter("citypass_entry_budget_overruns_total",
                                       "Entries that took longer than the entry budget", registry=r)
