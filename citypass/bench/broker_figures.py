"""The figures of ``citypass bench broker``: what one fleet size measured, and the side-by-side table of them.

:mod:`citypass.bench.broker` fills a :class:`SizeResult` per fleet size; :func:`table` turns a list of them into
rows with one cell per size, which the command prints (and :func:`markdown` as a Markdown table for the docs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from citypass.bench.fleet import Receipts
from citypass.bench.real_gates import Applied
from citypass.bench.report import percentile


@dataclass(frozen=True)
class FanOut:
    label: str
    latencies: list[float]   # seconds from the revoke call to each gate's receipt
    missing: int
    publish_s: float | None  # revoke call → the publisher handed the delta to its client
    receipts: list[Receipts]
    applied: list[Applied] = field(default_factory=list)  # the real gates: revoke call → committed in the ledger

    @property
    def applied_latencies(self) -> list[float]:
        return [a.latency for a in self.applied if a.latency is not None]


@dataclass
class SizeResult:
    gates: int
    processes: int
    load_before: str = ""
    load_after: str = ""
    nofile: tuple[int, int] = (0, 0)
    broker_nofile: str = ""
    enrol_s: float = 0.0
    prepare_s: float = 0.0
    connected: int = 0
    connect_s: float = 0.0
    attempts: int = 0
    refusals: int = 0
    rss_idle_kb: int = 0
    rss_held_kb: int = 0
    rss_restored_kb: int = 0
    broker_cpu_connect_s: float = 0.0
    fanouts: list[FanOut] = field(default_factory=list)
    start_s: float = 0.0  # the first start: config and ACL written, Mosquitto up, no sessions on disk yet
    stop_s: float = 0.0
    down_s: float = 0.0
    reconnect: list[float] = field(default_factory=list)  # seconds from the broker ready again to each SUBACK
    sessions_present: int = 0
    reconnect_attempts: int = 0
    first_phases: dict[str, list[float]] = field(default_factory=dict)
    reconnect_phases: dict[str, list[float]] = field(default_factory=dict)
    overflows_connect: int = 0
    fleet_cpu_connect_s: float = 0.0
    fleet_cpu_reconnect_s: float = 0.0
    overflows_reconnect: int = 0
    broker_cpu_reconnect_s: float = 0.0
    real_gates: int = 0        # real gates (GateSync + its own ledger) beside the simulated ones
    real_connected: int = 0
    real_reconnected: int = 0  # after the restart
    notes: list[str] = field(default_factory=list)


def _unused(fleet_cpu: float, broker_cpu: float, wall: float) -> str:
    """CPU seconds of the fleet and the broker against what two cores could give in ``wall``."""
    return f"{fleet_cpu:.1f} s clients + {broker_cpu:.1f} s broker in {wall:.1f} s (2 cores: {2 * wall:.1f} s)"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _spread(samples: list[float]) -> str:
    if not samples:
        return "—"
    return " / ".join(_ms(percentile(samples, q)) for q in (0.5, 0.99, 1.0))


def table(results: list[SizeResult]) -> list[tuple[str, list[str]]]:
    """The figures side by side: ``(measurement, one cell per fleet size)``."""
    rows: list[tuple[str, Callable[[SizeResult], str]]] = [
        ("sessions held", lambda r: f"{r.connected:,} of {r.gates:,}"),
        ("first connection of all (32 handshakes at once per process)",
         lambda r: f"{r.connect_s:.1f} s ({r.connected / r.connect_s:,.0f}/s)" if r.connect_s else "—"),
        ("CPU used for them: clients, broker; the 2 cores' seconds",
         lambda r: _unused(r.fleet_cpu_connect_s, r.broker_cpu_connect_s, r.connect_s)),
        ("broker CPU per connection", lambda r: _ms(r.broker_cpu_connect_s / max(1, r.connected))),
        ("first connection, p50/p99 of: TCP connect, TLS handshake, CONNACK, SUBACK",
         lambda r: _phases(r.first_phases)),
        ("connections dropped by a full listen queue (kernel)", lambda r: f"{r.overflows_connect:,}"),
        ("broker RSS idle → holding them", lambda r: f"{r.rss_idle_kb / 1024:,.1f} → {r.rss_held_kb / 1024:,.1f} MB"),
        ("broker memory per session",
         lambda r: f"{(r.rss_held_kb - r.rss_idle_kb) / max(1, r.connected):,.1f} kB"),
    ]
    for i in range(max(len(r.fanouts) for r in results)):
        label = results[0].fanouts[i].label if i < len(results[0].fanouts) else f"fan-out {i + 1}"
        rows += [(f"{label}: revoke → every gate, p50 / p99 / max", _fan_out_cell(i, lambda f: _spread(f.latencies))),
                 (f"{label}: gates reached / verified for real / byte-identical / bad", _fan_out_cell(i, _verified)),
                 (f"{label}: revoke → the issuer published",
                  _fan_out_cell(i, lambda f: "—" if f.publish_s is None else _ms(f.publish_s)))]
        if any(r.real_gates for r in results):
            rows.append((f"{label}: revoke → applied in a real gate's ledger, p50 / max (applied of real gates; "
                         "revoked on a ledger lookup; the gate's own part: receipt → applied, p50 / max)",
                         _fan_out_cell(i, _applied)))
    rows += [
        ("broker's first start (config and ACL written, no sessions on disk) → accepting TLS",
         lambda r: _ms(r.start_s)),
        ("broker restart: SIGTERM → exited (persistence written)", lambda r: _ms(r.stop_s)),
        ("broker restart: SIGTERM → accepting TLS again", lambda r: _ms(r.down_s)),
        *([("real gates (GateSync + own SQLite ledger, one process): connected; reconnected after the restart",
            lambda r: f"{r.real_connected} of {r.real_gates}; {r.real_reconnected} of {r.real_gates}")]
          if any(r.real_gates for r in results) else []),
        ("reconnected; with their session; connection attempts it took",
         lambda r: f"{len(r.reconnect):,}; {r.sessions_present:,}; {r.reconnect_attempts:,}"),
        ("reconnect after the broker is back, p50 / p90 / p99 / max",
         lambda r: " / ".join(f"{percentile(r.reconnect, q):.1f} s" for q in (0.5, 0.9, 0.99, 1.0))
         if r.reconnect else "—"),
        ("reconnection, p50/p99 of: loss → the attempt that succeeded began, its TCP connect, TLS handshake, "
         "CONNACK, SUBACK",
         lambda r: _phases(r.reconnect_phases)),
        ("connections dropped by a full listen queue during the reconnection",
         lambda r: f"{r.overflows_reconnect:,}"),
        ("CPU used for the restart and reconnection: clients, broker; the 2 cores' seconds",
         lambda r: _unused(r.fleet_cpu_reconnect_s, r.broker_cpu_reconnect_s, max(r.reconnect, default=0) + r.down_s)),
        ("broker RSS after the reconnection", lambda r: f"{r.rss_restored_kb / 1024:,.1f} MB"),
        ("TLS contexts made (slowest process)", lambda r: f"{r.prepare_s:.1f} s"),
        ("enrolment: keys, CSRs, one CA batch, files", lambda r: f"{r.enrol_s:.1f} s"),
        ("open files: bench soft/hard; broker", lambda r: f"{r.nofile[0]:,}/{r.nofile[1]:,}; {r.broker_nofile}"),
        ("load average before → after", lambda r: f"{r.load_before.split(' (')[0]} → {r.load_after.split(' (')[0]}"),
    ]
    return [(name, [cell(r) for r in results]) for name, cell in rows]


def _phases(steps: dict[str, list[float]]) -> str:
    return "; ".join(f"{percentile(v, 0.5):.2f}/{percentile(v, 0.99):.2f} s" for v in steps.values() if v) or "—"


def _fan_out_cell(i: int, show: Callable[[FanOut], str]) -> Callable[[SizeResult], str]:
    return lambda r: show(r.fanouts[i]) if i < len(r.fanouts) else "—"


def _applied(f: FanOut) -> str:
    if not f.applied:
        return "—"
    times = f.applied_latencies
    spread = f"{_ms(percentile(times, 0.5))} / {_ms(max(times))}" if times else "—"
    # the gate's own part: paho handed it the delta → its ledger committed it (verify, check, SQLite commit)
    own = [a.latency - a.receipt for a in f.applied if a.latency is not None and a.receipt is not None]
    return (f"{spread} ({len(times)} of {len(f.applied)}; {sum(a.revoked for a in f.applied)} revoked)"
            + (f"; receipt → applied {_ms1(percentile(own, 0.5))} / {_ms1(max(own))}" if own else ""))


def _ms1(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def _verified(f: FanOut) -> str:
    reached = len(f.latencies)
    verified = sum(r.verified for r in f.receipts)
    identical = sum(r.identical for r in f.receipts)
    bad = sum(r.bad for r in f.receipts)
    spent = sum(r.verify_s for r in f.receipts)
    return (f"{reached:,} / {verified:,} / {identical:,} / {bad}"
            + (f" (missing {f.missing})" if f.missing else "")
            + (f"; {spent / verified * 1e6:,.0f} µs each" if verified else ""))


def markdown(results: list[SizeResult]) -> str:
    head = "| measurement | " + " | ".join(f"{r.gates:,} gates" for r in results) + " |"
    lines = [head, "| --- |" + " --- |" * len(results)]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in table(results)]
    return "\n".join(lines)
