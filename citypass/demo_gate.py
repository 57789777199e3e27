"""The demo's second act: the issuer service and a real gate daemon deciding on camera-style frames.

The issuer's HTTP API is served for real (uvicorn on a free local port): the visitors' codes come from
``POST /v1/passes`` and ``POST /v1/reservations``, the gate's ledger from ``GET /v1/ledger/snapshot``,
and afterwards the gate's outbox goes up with ``POST /v1/taps`` and the operator's view comes back from
``GET /v1/sites/{site}/occupancy`` and ``GET /v1/incidents``.

A museum entrance gate is built by the daemon's own wiring point (:func:`gate.wiring.build_daemon`)
from a config: SQLite ledger loaded from the issuer's signed snapshot, the zxing decoder, a barrier on
gpiozero mock pins, and a camera whose frames come through a memory feed — rendered phone screens held
up at an angle, under glare, in dark mode, blurred. A visitor simulator pushes those frames, watches the
relay pin and breaks the passage beam for the people who walk through (some turn back: their unused
entries are annulled, the ticket is not burned).
"""

from __future__ import annotations

import base64
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from gpiozero.pins.mock import MockFactory
from rich.console import Console
from rich.table import Table

from bench.frames import synth_frame
from credential import SigningKey, present
from gate.camera import forget_feed, memory_feed
from gate.config import GateConfig, load_config
from gate.daemon import GateDaemon, Outcome
from gate.ledger import GateLedger
from gate.logs import EventLog
from gate.wiring import build_daemon, build_sync
from provisioning.enroll import EnrollRequest, enroll
from sync.gate_sync import GateSync

SIZE = (1280, 720)
FEED = "demo-museum"


@dataclass(frozen=True)
class Visitor:
    label: str
    code: str
    condition: str
    walkers: int  # how many people actually walk through if the gate opens


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                           f"{response.text[:300]}")
    body: dict[str, Any] = response.json()
    return body


def _ok_list(response: httpx.Response) -> list[dict[str, Any]]:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.url.path}: {response.status_code} {response.text[:300]}")
    body: list[dict[str, Any]] = response.json()
    return body


def _visitors(api: httpx.Client, now: int) -> list[Visitor]:
    slot = _ok(api.post("/v1/venues/zhejiang-museum/slots",
                        json={"starts_at": now - 600, "ends_at": now + 3000, "capacity": 40}))

    def reserve(party: int, holder: SigningKey | None = None) -> str:
        body: dict[str, Any] = {"slot_id": slot["id"], "party": party}
        if holder is not None:
            body["holder_key"] = base64.b64encode(holder.public.raw).decode()
        code: str = _ok(api.post("/v1/reservations", json=body))["code"]
        return code

    family, couple = reserve(3), reserve(2)
    annual = _ok(api.post("/v1/passes", json={"product": "annual", "sites": ["west-lake"]}))["code"]
    phone = SigningKey.generate()
    bound = reserve(1, phone)
    forged_base = reserve(1)
    forged = forged_base[:-8] + ("A" if forged_base[-8] != "A" else "B") + forged_base[-7:]
    return [
        Visitor("family of 3, phone tilted", family, "perspective", 3),
        Visitor("annual scenic pass at the museum, under glare", annual, "glare", 0),
        Visitor("couple, dark-mode phone; one turns back", couple, "dark_mode", 1),
        Visitor("the couple's partner comes back", couple, "moire", 1),
        Visitor("the family's code again, blurred", family, "blur", 0),
        Visitor("tampered code", forged, "clean", 0),
        Visitor("live (holder-bound) code, far from the camera", present(bound, phone, now), "small", 1),
    ]


def _enrol_gate(console: Console, fleet: httpx.Client, home: Path, gate_id: str, site: int, feed: str,
                direction: str = "entry") -> GateConfig:
    """Register the gate at the issuer and enrol it exactly as a technician would (`citypass provision
    enroll`): device key made here, CSR signed by the issuer's device CA, snapshot verified against the
    pinned root, ledger installed, gate.toml (with its [sync] section) written. Returns the demo's config:
    the enrolled one with a quick barrier and no health port."""
    _ok(fleet.post("/v1/devices", json={"id": gate_id, "site": site, "direction": direction,
                                        "description": f"demo {direction} gate"}))
    enrollment = _ok(fleet.post("/v1/enrollments", json={"device_id": gate_id, "ttl_s": 600}))
    steps: list[str] = []
    enroll(EnrollRequest(issuer=str(fleet.base_url), token=enrollment["token"], home=home, device_id=gate_id,
                         camera=f"memory:{feed}", pins="mock", health_port=0),
           on_step=lambda step, detail: steps.append(step))
    console.print(f"enrolled {gate_id} through the real enrollment flow: {' → '.join(steps)}")
    enrolled = load_config(home / "gate.toml")
    return enrolled.model_copy(update={
        "camera": enrolled.camera.model_copy(update={"width": SIZE[0], "height": SIZE[1], "fps": 30}),
        "barrier": enrolled.barrier.model_copy(update={"passage_timeout_s": 1.5, "open_per_person_s": 1.0,
                                                       "sensor_bounce_s": None}),
        "decision": enrolled.decision.model_copy(update={"leave_after_s": 0.4}),
        "health": enrolled.health.model_copy(update={"enabled": False}), "log_level": "warning",
    })


def run_gate_demo(console: Console, out: Path, api: httpx.Client, reports: httpx.Client,
                  fleet: httpx.Client, now: int, issuer_sync: Callable[[], AbstractContextManager[object]]) -> None:
    """Two lanes of a museum entrance, codes and ledgers from the issuer at ``api``: lane 1 decides with
    its MQTT link down; lane 2 is online; then lane 1 comes back and catches up, and the issuer finds the
    reservation that was used at both."""
    visitors = _visitors(api, now)
    museum = next(s for s in _ok_list(api.get("/v1/venues")) if s["name"] == "zhejiang-museum")
    lane1 = _enrol_gate(console, fleet, out / "gate-museum", "museum-entrance-1", museum["number"], FEED)
    lane2 = _enrol_gate(console, fleet, out / "gate-museum-2", "museum-entrance-2", museum["number"], FEED + "-2")
    console.print(f"\n[bold]A gate on camera frames[/] — {lane1.gate_id}, ledger {lane1.ledger.path}; "
                  "its MQTT link is down, so it decides offline and buffers every tap")
    daemon1 = _run_lane(console, lane1, visitors, None)
    _summary(console, lane1)
    friends = Visitor("friends with a screenshot of the family's code", visitors[0].code, "glare", 3)
    with issuer_sync():
        console.print(f"\n[bold]The lane next to it[/] — {lane2.gate_id}, online: it uploads as it decides. "
                      "It has not seen the family's entry at the offline lane.")
        _run_lane(console, lane2, [friends], _quiet)
        _catch_up(console, lane1, daemon1, reports)
        _metro(console, out, api, reports, fleet)


def _metro(console: Console, out: Path, api: httpx.Client, reports: httpx.Client, fleet: httpx.Client) -> None:
    """A metro ride: riders tap in at Longxiangqiao and out at Fengqi (two online gates); the issuer
    pairs the taps into journeys across stations and prices them from its fare table."""
    stations = {s["name"]: s["number"] for s in _ok_list(api.get("/v1/sites")) if s["kind"] == "metro"}
    _ok(reports.put("/v1/fares", json={"default_fare": 300, "pairs": [[stations["longxiangqiao"],
                                                                         stations["fengqi"], 400]]}))

    def rider(account: str) -> str:
        code: str = _ok(api.post("/v1/passes", json={"product": "transit", "account": account,
                                                      "modes": ["metro"]}))["code"]
        return code

    commuter, late, gate_jumper = rider("13800000001"), rider("13800000002"), rider("13800000003")
    entry = _enrol_gate(console, fleet, out / "gate-metro-in", "metro-longxiangqiao-in", stations["longxiangqiao"],
                        FEED + "-metro-in")
    exit_ = _enrol_gate(console, fleet, out / "gate-metro-out", "metro-fengqi-out", stations["fengqi"],
                        FEED + "-metro-out", direction="exit")
    console.print("\n[bold]Metro[/] — tap in at Longxiangqiao, tap out at Fengqi (both gates online)")
    _run_lane(console, entry, [Visitor("commuter taps in", commuter, "perspective", 1),
                               Visitor("rider taps in (still riding)", late, "dark_mode", 1)], _quiet)
    _run_lane(console, exit_, [Visitor("commuter taps out", commuter, "glare", 1),
                               Visitor("rider who jumped the entry gate", gate_jumper, "clean", 1)], _quiet)
    table = Table(title="Journeys at the issuer (GET /v1/journeys)")
    for col in ("credential", "from", "to", "fare (fen)", "complete", "flag"):
        table.add_column(col)
    names = {n: name for name, n in stations.items()}
    for j in _ok_list(reports.get("/v1/journeys")):
        table.add_row(j["credential_id"][:8], names.get(j["from_site"], "—"), names.get(j["to_site"], "—"),
                      "—" if j["fare"] is None else str(j["fare"]), "yes" if j["complete"] else "no",
                      j["flag"] or ("in progress" if not j["complete"] else ""))
    console.print(table)


def _quiet(cfg: GateConfig, daemon: GateDaemon) -> GateSync | None:
    return build_sync(cfg, daemon, EventLog(gate_id=cfg.gate_id, level="error"))


def _run_lane(console: Console, cfg: GateConfig, visitors: list[Visitor],
              online: Callable[[GateConfig, GateDaemon], GateSync | None] | None) -> GateDaemon:
    """Run one gate daemon (main thread: it owns the ledger) while a visitor simulator on another thread
    holds phones up to its camera and walks people through its beam. ``online`` builds its sync thread."""
    pins = MockFactory()
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    feed_name = cfg.camera.source.split(":", 1)[1]
    feed = memory_feed(feed_name, maxsize=2)
    daemon = build_daemon(cfg, pin_factory=pins, observer=outcomes.put)
    sync = online(cfg, daemon) if online is not None else None
    rows: list[list[str]] = []

    def simulate() -> None:
        relay, beam = pins.pin(cfg.barrier.relay_pin), pins.pin(cfg.barrier.sensor_pin)
        blank = synth_frame(None, "no_code", SIZE, 0)
        try:
            for v in visitors:
                image = synth_frame(v.code, v.condition, SIZE, 11)
                result: Outcome | None = None
                for _ in range(30):  # hold the phone up for at most one second of frames
                    feed.push(image, block=True, timeout=1.0)
                    time.sleep(1 / 30)
                    try:
                        result = outcomes.get_nowait()
                        break
                    except queue.Empty:
                        pass
                walked = 0
                if result is not None and result.decision.allowed:
                    for _ in range(v.walkers):
                        if not relay.state:
                            break
                        beam.drive_low()
                        time.sleep(0.05)
                        beam.drive_high()
                        walked += 1
                        time.sleep(0.1)
                    _wait(lambda: not relay.state, 3.0)  # the rest turn back: the barrier times out
                for _ in range(int(cfg.decision.leave_after_s * 30) + 4):  # the phone leaves the view
                    feed.push(blank, block=True, timeout=1.0)
                    time.sleep(1 / 30)
                rows.append(_row(v, result, walked))
            if sync is not None:  # an online lane: let the upload finish before it stops
                with GateLedger.from_config(cfg.ledger) as ledger:  # this thread's own connection
                    _wait(lambda: ledger.backlog() == 0, 10.0)
        finally:
            daemon.stop()

    visitor_thread = threading.Thread(target=simulate, name="visitors", daemon=True)
    if sync is not None:
        sync.start()
    visitor_thread.start()
    try:
        daemon.run()
    finally:
        visitor_thread.join(timeout=5)
        if sync is not None:
            sync.stop()
        forget_feed(feed_name)
    table = Table(title=f"{cfg.gate_id}: camera frames → decision → barrier")
    for col in ("visitor", "frames", "decision", "reason / 原因", "persons", "walked", "frame→relay"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return daemon


def _row(v: Visitor, result: Outcome | None, walked: int) -> list[str]:
    if result is None:
        return [v.label, v.condition, "[yellow]not read[/]", "", "", "", ""]
    d = result.decision
    why = f"{d.reason.value}: {d.reason.zh} / {d.reason.en}" if d.reason else "请通行 / Welcome"
    relay = result.frame_to_relay_s
    return [v.label, v.condition, "[green]allow[/]" if d.allowed else "[red]deny[/]", why,
            str(d.persons), str(walked) if d.allowed else "", f"{relay * 1000:.1f} ms" if relay is not None else ""]


def _summary(console: Console, cfg: GateConfig) -> None:
    with GateLedger.from_config(cfg.ledger) as ledger:
        rows = ledger.pending(10_000)
        kinds: dict[str, int] = {}
        for row in rows:
            kinds[row.kind] = kinds.get(row.kind, 0) + 1
        ok = ledger.integrity_check().ok
    console.print(f"ledger: {kinds.get('tap', 0)} taps, {kinds.get('passage', 0)} passages, "
                  f"{kinds.get('annul', 0)} annulments waiting in the outbox for the issuer; integrity "
                  f"{'ok' if ok else 'FAILED'}")


def _catch_up(console: Console, cfg: GateConfig, daemon: GateDaemon, reports: httpx.Client) -> None:
    """The gate decided all of the above with its MQTT link down. Now the link comes back: its sync thread
    connects to the TLS broker, uploads the outbox, and marks events uploaded only when the issuer's
    ingest worker acknowledges them. Then show what the operator sees."""
    sync = build_sync(cfg, daemon, EventLog(gate_id=cfg.gate_id, level="error"))
    if sync is None:
        raise RuntimeError("the enrolled gate config has no [sync] section")
    with GateLedger.from_config(cfg.ledger) as ledger:
        backlog = ledger.backlog()
        console.print(f"\n[bold]Back online[/]: {cfg.gate_id} reconnects to the broker with {backlog} events "
                      "buffered while offline")
        started = time.monotonic()
        sync.start()
        try:
            _wait(lambda: ledger.backlog() == 0, 30.0)
        finally:
            sync.stop()
        left, took = ledger.backlog(), time.monotonic() - started
    site = _ok(reports.get("/v1/sites/zhejiang-museum/occupancy"))
    incidents = reports.get("/v1/incidents").json()
    kinds: dict[str, int] = {}
    for incident in incidents:
        kinds[incident["kind"]] = kinds.get(incident["kind"], 0) + 1
    console.print(f"issuer: {backlog - left} events acknowledged over MQTT in {took:.1f} s ({left} left on the "
                  f"gate); zhejiang-museum occupancy now {site['inside']} ({site['entries_today']} entries today); "
                  "incidents: " + (", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items())) or "none"))


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():  # type: ignore[operator]
        time.sleep(0.02)
