"""The director of the demo's city act: six gates at four kinds of site, all running at once.

It mints the visitors' cards through the issuer's API, enrolls every gate through the real enrollment
flow, gives the museum a broker of its own (a site broker, bridged to the city's: its two lanes share
admissions over it), starts the gates (each :class:`~citypass.city.lane.Lane` on its own threads), then plays
the script of :mod:`citypass.city.script` phase by phase — cutting museum lane 1's link to the museum's broker
through a :class:`~citypass.sync.relay.LinkRelay`, revoking a pass while the gates run, restoring the link — and
finally
waits until every gate's outbox is empty and the issuer holds every tap, reads the issuer's reports and
checks them against what the gates saw (:mod:`citypass.city.checks`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live

from citypass.bench.syncworld import backlog
from citypass.city.cast import mint_cast
from citypass.city.checks import Check, Facts, run_checks
from citypass.city.enrol import enrol_gate
from citypass.city.faces import add_wallet_visitor, print_addresses, print_console_address, with_screen
from citypass.city.http import DemoError, ok, ok_list
from citypass.city.lane import Lane, VisitResult
from citypass.city.script import (
    GATES,
    LANE1,
    LANE2,
    MUSEUM_LANES,
    SCENIC,
    Action,
    Cast,
    Cut,
    Phase,
    Restore,
    Revoke,
    Visit,
    build_script,
    crowd,
)
from citypass.city.summary import fetch_reports, print_summary
from citypass.city.tours import Tours, check_tours, print_tours, register_tours, tour_visits
from citypass.city.view import CityView
from citypass.sync.broker import Broker
from citypass.sync.home import BrokerHome
from citypass.sync.relay import LinkRelay
from citypass.sync.sitebroker import SiteBrokerHome

FARE = 400  # fen, Longxiangqiao ↔ Fengqi
MUSEUM = "zhejiang-museum"
NOTES = {
    "opening": "every gate online; the museum's two lanes share admissions through the museum's own broker",
    "link down": f"{LANE1} is cut off from the museum's broker (its sibling and the city); it decides offline",
    "still down": f"{LANE2}, online, has not heard of {LANE1}'s offline entries",
    "link back": f"{LANE1}'s link is back: its buffered taps go up to the issuer",
}


@dataclass(frozen=True)
class CityOptions:
    visitors: int = 40
    duration_s: float = 40.0
    seed: int = 7
    live: bool = True


@dataclass(frozen=True)
class Clients:
    api: httpx.Client       # the issuer role: passes, reservations, revocations
    reports: httpx.Client   # the operator role: reports, fares
    fleet: httpx.Client     # the technician role: devices, enrollments


class _ConsoleErrors(logging.Handler):
    """Library log records of level ERROR and above, printed above the live view."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.ERROR)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        self.console.print(f"[red]{record.name}: {record.getMessage()}[/]", highlight=False)


@contextmanager
def _library_logs(console: Console) -> Iterator[None]:
    """The gates' and sync's library logs (a camera reopening, a link dropping: the view shows those)
    stay out of the view; errors still show."""
    handler = _ConsoleErrors(console)
    loggers = [logging.getLogger(name) for name in ("citypass",)]
    previous = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in zip(loggers, previous, strict=True):
            logger.removeHandler(handler)
            logger.propagate = propagate


class City:
    def __init__(self, console: Console, out: Path, clients: Clients, broker: tuple[str, int],
                 issuer_sync: Callable[[], AbstractContextManager[object]], options: CityOptions,
                 broker_home: BrokerHome) -> None:
        self.console, self.out, self.clients, self.options = console, out, clients, options
        self.broker, self.issuer_sync, self.broker_home = broker, issuer_sync, broker_home
        self.results: list[VisitResult] = []
        self.tours: Tours | None = None
        self.lanes: dict[str, Lane] = {}
        self.relay: LinkRelay | None = None  # museum lane 1's link to the museum's broker
        self.site_broker_pid: int | None = None
        self.double_use_before = 0
        self.backlog: dict[str, int] = {}
        self.view = CityView(console, GATES, lambda: {g: lane.connected for g, lane in self.lanes.items()},
                             live=options.live)

    def run(self) -> list[Check]:
        now = int(time.time())
        cast = mint_cast(self.clients.api, now, crowd(self.options.visitors, self.options.seed))
        sites = {s["name"]: s["number"] for s in ok_list(self.clients.api.get("/v1/sites"))}
        ok(self.clients.reports.put("/v1/fares", json={"default_fare": 300,
                                                       "pairs": [[sites["longxiangqiao"], sites["fengqi"], FARE]]}))
        self.tours = register_tours(self.clients.api, now)
        self.console.print(f"two agencies registered a tour group each (POST /v1/groups): {self.tours.on_time} for "
                           f"West Lake then the museum; {self.tours.late} due at Lingyin 45 min ago — the issuer "
                           f"warned: {self.tours.warning}")
        phases = build_script(cast, self.options.duration_s, tour_visits(self.tours))
        visits = sum(len(p.visits) for p in phases)
        self.console.print(f"\n[bold]The city[/] — {len(cast.crowd)} visitors in the crowd and {visits} visits at "
                           f"{len(GATES)} gates over four phases (cards issued over HTTP by the issuer)")
        with ExitStack() as stack:
            stack.enter_context(_library_logs(self.console))
            stack.callback(self._stop_lanes)  # on any way out, every lane that was made is stopped
            configs = {}
            for spec in GATES:
                cfg, steps = enrol_gate(self.clients.fleet, self.out / "gates" / spec.gate_id, spec, sites[spec.site])
                if spec.gate_id == SCENIC:  # this lane's result screen is served, for a browser to open
                    cfg = with_screen(cfg)
                self.console.print(f"enrolled {spec.gate_id} ({spec.label}): {' → '.join(steps)}")
                configs[spec.gate_id] = cfg
            site_port = self._site_broker(stack, sites[MUSEUM])
            for gate, cfg in configs.items():
                if gate in MUSEUM_LANES:  # the museum's lanes use the museum's broker; lane 1 through a cuttable link
                    assert cfg.sync is not None and self.relay is not None
                    port = self.relay.port if gate == LANE1 else site_port
                    cfg = cfg.model_copy(update={"sync": cfg.sync.model_copy(update={"broker_port": port})})
                self.lanes[gate] = Lane(cfg, self._report, self._may_come)
            stack.enter_context(self.issuer_sync())
            for lane in self.lanes.values():
                lane.start()
            took = self._wait("every gate to connect to the broker",
                              lambda: all(x.connected for x in self.lanes.values()), 30)
            self.console.print(f"all {len(self.lanes)} gates running and connected to the broker over TLS "
                               f"({took:.1f} s)")
            print_addresses(self.console, self.clients.api, self.lanes[SCENIC])
            print_console_address(self.console, self.clients.reports, self.out)
            add_wallet_visitor(self.console, self.clients.api, stack, phases)
            with self._live():
                for phase in phases:
                    self._play(phase)
                self._drain()
            self._stop_lanes()
            # after the gates stopped: a decision made after the drain would show here as not acknowledged
            self.backlog = {g: self._backlog(g) for g in self.lanes}
        return self._finish(cast)

    def _site_broker(self, stack: ExitStack, site: int) -> int:
        """Make the museum's site broker home from the city's broker home, start it (its bridge dials the city's
        broker) and the link lane 1 reaches it through; the site broker's port."""
        home = SiteBrokerHome.export(self.broker_home, site, self.out / "museum-broker", self.broker)
        broker = stack.enter_context(Broker(home))
        self.site_broker_pid = broker.pid
        self.relay = LinkRelay(broker.host, broker.port).start()
        stack.callback(self.relay.stop)
        self.console.print(f"the museum's own broker (Mosquitto, pid {broker.pid}, {broker.host}:{broker.port}) "
                           f"bridged to the city's: {LANE1} and {LANE2} share admissions over it, also when the "
                           "city link is down")
        return broker.port

    def _may_come(self, visit: Visit) -> bool:
        """A visitor who follows another (the friend with a screenshot) comes once that one was decided."""
        return not visit.after or any(r.visit.label == visit.after and r.outcome is not None for r in self.results)

    def _stop_lanes(self) -> None:
        for lane in self.lanes.values():  # everyone home at once, then each gate shuts down
            lane.stop_visitors()
        for lane in self.lanes.values():
            lane.stop()

    def _backlog(self, gate: str) -> int:
        """Events on ``gate`` not yet acknowledged, read through a read-only connection (the gate's own
        connections keep the write lock to themselves)."""
        return backlog(self.lanes[gate].cfg.ledger.path)

    def _wait(self, what: str, predicate: Callable[[], bool], timeout: float) -> float:
        """Seconds until ``predicate()`` held; a gate that failed meanwhile is reported at once."""
        started = time.monotonic()
        while not predicate():
            self._check_lanes()
            if time.monotonic() - started > timeout:
                raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)
        return time.monotonic() - started

    @contextmanager
    def _live(self) -> Iterator[None]:
        if not self.options.live:
            yield
            return
        with Live(self.view, console=self.console, refresh_per_second=4):
            yield

    def _report(self, result: VisitResult) -> None:
        self.results.append(result)
        self.view.record(result)

    def _play(self, phase: Phase) -> None:
        self.view.set_phase(phase.name, NOTES[phase.name])
        for action in phase.before:
            self._act(action)
        started = time.monotonic()
        for visit in phase.visits:
            self.lanes[visit.gate].submit(visit, phase.name, started)
        self._wait(f"the visitors of phase {phase.name!r}", lambda: not any(x.busy for x in self.lanes.values()),
                   self.options.duration_s + 30 + 5 * len(phase.visits))
        self._check_lanes()

    def _check_lanes(self) -> None:
        for lane in self.lanes.values():
            if lane.error is not None:
                raise DemoError(f"gate {lane.gate_id} failed: {lane.error!r}")

    def _act(self, action: Action) -> None:
        assert self.relay is not None
        if isinstance(action, Cut):
            self.relay.cut()
            lane = self.lanes[action.gate]
            took = self._wait(f"{action.gate} to notice its link is down", lambda: not lane.connected, 15)
            self.console.print(f"[red]link cut[/]: {action.gate} lost the broker ({took:.1f} s to notice)")
        elif isinstance(action, Revoke):
            body = {"credential_id": action.card.credential_id, "reason": action.reason}
            seq = ok(self.clients.api.post("/v1/revocations", json=body))["ledger_seq"]
            took = self._wait("the revocation to reach the online gates",
                              lambda: all((self.lanes[g].ledger_seq or 0) >= seq for g in action.gates), 20)
            self.console.print(f"operator revokes pass {action.card.credential_id[:8]} ({action.reason}): ledger "
                               f"seq {seq}, a signed delta the issuer publishes on MQTT; {', '.join(action.gates)} "
                               f"applied it {took:.1f} s later")
        elif isinstance(action, Restore):
            self._wait(f"{LANE2} to upload", lambda: self._backlog(LANE2) == 0, 20)
            incidents = ok_list(self.clients.reports.get("/v1/incidents", params={"kind": "double_use"}))
            self.double_use_before = len(incidents)
            self.console.print(f"issuer, before the link returns: {len(incidents)} double use(s) known — "
                               f"{action.gate}'s taps are still on {action.gate}")
            buffered = self._backlog(action.gate)
            try:
                self.relay.restore()
            except OSError as exc:
                raise DemoError(f"cannot restore {action.gate}'s link: {exc}") from None
            took = self._wait(f"{action.gate} to reconnect", lambda: self.lanes[action.gate].connected, 30)
            self.console.print(f"[green]link restored[/]: {action.gate} reconnected in {took:.1f} s with {buffered} "
                               "events buffered")
            took = self._wait(f"{action.gate} to catch up", lambda: self._backlog(action.gate) == 0, 30)
            found = self._wait("the issuer to report the double use", lambda: bool(ok_list(self.clients.reports.get(
                "/v1/incidents", params={"kind": "double_use"}))), 15)
            self.console.print(f"{action.gate} caught up in {took:.1f} s (every event acknowledged by an ingest "
                               f"worker); {found:.1f} s later the issuer reports the double use")
            took = self._wait("both museum lanes to flag the double use", lambda: all(
                self.lanes[g].counters.get("lane_races", 0) >= 1 for g in MUSEUM_LANES), 30)
            self.console.print(f"{LANE1} and {LANE2} each flagged the double use as soon as they heard of each "
                               f"other's admission (sync_lane_race; {took:.1f} s after the issuer's report)")

    def _drain(self) -> None:
        took = self._wait("every gate's outbox to be acknowledged",
                          lambda: all(self._backlog(g) == 0 for g in self.lanes), 60)
        self.console.print(f"every outbox acknowledged by the issuer ({took:.1f} s after the last visitor)")

    def _finish(self, cast: Cast) -> list[Check]:
        entry_sites = sorted({g.site for g in GATES if g.site in ("west-lake", "zhejiang-museum")})
        reports = fetch_reports(self.clients.reports, entry_sites)
        facts = Facts(
            cast=cast, gates=GATES, results=self.results,
            gate_taps={g: lane.taps for g, lane in self.lanes.items()},
            unexpected={g: len(lane.unexpected) for g, lane in self.lanes.items()},
            backlog=self.backlog,
            activity=reports.activity, incidents=reports.incidents,
            inside={s: o["inside"] for s, o in reports.occupancy.items()}, journeys=reports.journeys, fare=FARE,
            double_use_before_reconnect=self.double_use_before,
            lane_counters={g: lane.counters for g, lane in self.lanes.items()},
        )
        names = reports.site_names
        assert self.tours is not None  # registered at the start of run()
        tours = [ok(self.clients.reports.get(f"/v1/groups/{g}")) for g in (self.tours.on_time, self.tours.late)]
        print_tours(self.console, tours, names)
        checks = [*run_checks(facts), check_tours(tours, self.tours, names)]
        print_summary(self.console, facts, reports, checks, {g: lane.relay_s for g, lane in self.lanes.items()})
        return checks
