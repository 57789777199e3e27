"""``citypass demo``: a scripted walk-through of the credential system, end to end, on this machine.

It initialises an issuer, mints a code of every product (static and holder-bound dynamic), renders each
to a phone-screen PNG, reads the PNGs back through the gate's own QR decoder, and decides each at the
right kind of gate from a signed snapshot — then shows what a gate does with a forged code, a revoked
pass, a screenshot replayed after its window, a passback attempt and a code for the wrong site. Act 1 also
admits two partner platforms (a metro company signing GM1 ride codes with SM2/SM3, a tourism platform
signing CP1 passes with its own key) and decides their codes inside and outside their scope, and uses a
benefit card (惠民卡), whose uses left the gate shows.
Everything it writes goes to ``--out`` (default ``demo-out/``).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import click
import httpx
from rich.console import Console
from rich.table import Table

from citypass.city.cast import forge_signature
from citypass.city.http import DemoError
from citypass.credential import Mode, SigningKey, load_snapshot, parse, present, qr
from citypass.credential.benefit import remaining_text
from citypass.credential.claims import Benefit
from citypass.credential.timefmt import format_time, utc_now
from citypass.firmware_hooks.lifecycle import process_alive
from citypass.gate.decision import GateContext, decide
from citypass.gate.memory_ledger import MemoryLedger
from citypass.gate.policy import Direction
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer

SITES = [("west-lake", "scenic"), ("lingyin", "scenic"), ("zhejiang-museum", "museum"),
         ("longxiangqiao", "metro"), ("fengqi", "metro"), ("bus-k7", "bus"), ("water-bus-1", "water_bus")]


@dataclass
class Step:
    label: str
    code: str
    site: str
    direction: Direction = Direction.ENTRY
    at_offset: int = 0
    via_image: bool = True


def _partner_steps(iss: Issuer, phone: SigningKey, folder: Path, now: int) -> list[Step]:
    """Admit two partner platforms from their own kits' descriptors, mint their codes, and a benefit card."""
    from citypass.credential import sm2
    from citypass.credential.claims import Annual, Credential, Transit
    from citypass.issuer import benefits, partners
    from citypass.partner.kit import PartnerHome

    def admit(pid: str, zh: str, en: str, alg: str, products: list[int], sites: list[str]) -> PartnerHome:
        home = PartnerHome.init(folder / pid, pid, zh, en, alg)
        descriptor = partners.parse_descriptor(json.dumps(home.descriptor()))
        entry = partners.admit(iss.store, iss.trust_list(now), descriptor, products=products, now=now - 3600,
                               sites=[iss.site_number(s) for s in sites])
        home.set_number(entry.number)
        return home

    tourism = admit("zj-tourism", "浙里游", "Zhejiang Tourism", "ed25519", [1], ["west-lake", "lingyin"])
    their_pass = tourism.mint(Credential(os.urandom(8), Annual(frozenset({iss.site_number("lingyin")})),
                                         now - 3600, now + 86_400))
    steps = [Step("浙里游 partner pass (CP1, its own Ed25519 key)", their_pass, "lingyin", at_offset=2000)]
    if sm2.available():
        metro = admit("hz-metro", "杭州地铁", "Hangzhou Metro", "sm2", [3], ["longxiangqiao", "fengqi"])
        ride = metro.mint(Credential(os.urandom(8), Transit("13900000000", Mode.METRO), now - 60, now + 3600))
        steps += [
            Step("杭州地铁 ride code (GM1, SM2/SM3)", ride, "fengqi", at_offset=2100),
            Step("the same ride code on a bus (outside its scope)", ride, "bus-k7", at_offset=2200, via_image=False),
        ]
    card = benefits.mint(iss, ["zhejiang-museum", "lingyin"], 2, phone.public, now - 86_400)
    steps.append(Step("惠民卡 benefit card, live code", present(card, phone, now + 2300), "zhejiang-museum",
                      at_offset=2300))
    return steps


def _steps(iss: Issuer, phone: SigningKey, now: int) -> list[Step]:
    annual = iss.mint_annual([s for s, k in SITES if k == "scenic"], now - 3600)
    reservation = iss.mint_reservation("zhejiang-museum", now - 600, now + 3000, 3, now)
    transit = iss.mint_transit("13800000000", Mode.METRO | Mode.BUS | Mode.WATER_BUS, now, holder=phone.public)
    group = iss.mint_group("lingyin", 12, now)
    revoked = iss.mint_annual(["west-lake"], now - 3600)
    iss.revoke(parse(revoked).credential.id.hex(), now, "reported lost")
    forged = forge_signature(annual)
    live = present(transit, phone, now)
    return [
        Step("annual pass, static", annual, "west-lake"),
        Step("annual pass again 2 min later (passback)", annual, "west-lake", at_offset=120, via_image=False),
        Step("annual pass at another scenic spot", annual, "lingyin", at_offset=900),
        Step("museum reservation, party of 3", reservation, "zhejiang-museum"),
        Step("same reservation shown again", reservation, "zhejiang-museum", at_offset=60, via_image=False),
        Step("tour group of 12", group, "lingyin", at_offset=1000),
        Step("transit, live code: metro tap-in", live, "longxiangqiao"),
        Step("same live code again, 5 s later (replay)", live, "longxiangqiao", at_offset=5, via_image=False),
        Step("transit, screenshot replayed after 2 min", live, "bus-k7", at_offset=120, via_image=False),
        Step("transit, fresh live code on the water bus", present(transit, phone, now + 300), "water-bus-1",
             at_offset=300),
        Step("transit, metro tap-out", present(transit, phone, now + 1500), "longxiangqiao",
             Direction.EXIT, at_offset=1500),
        Step("transit shown as a static code", transit, "bus-k7", at_offset=1600, via_image=False),
        Step("annual pass at the museum (wrong site)", annual, "zhejiang-museum", at_offset=1700, via_image=False),
        Step("revoked annual pass", revoked, "west-lake", at_offset=1800),
        Step("forged code (issuer key id, forged signature)", forged, "west-lake", at_offset=1900),
    ]


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"), show_default=True,
              help="Directory for the issuer home, snapshot, QR images and the gates' homes (recreated).")
@click.option("--visitors", type=click.IntRange(0, 2000), default=40, show_default=True,
              help="Size of the crowd in the city act (on top of the scripted visitors).")
@click.option("--duration", type=click.FloatRange(4, 3600), default=40.0, show_default=True,
              help="Seconds over which the city act's visitors arrive (a busy gate may take longer).")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the crowd's make-up.")
@click.option("--live/--log", default=None,
              help="Live terminal view, or one line per decision (default: live on a terminal).")
@click.option("--screens", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Instead: write screenshots of the lane's screen in each state and of the wallet into this "
                   "directory, taken in a real browser (Chromium), and exit.")
@click.option("--database", default=None, metavar="URL",
              help="Keep the issuer's store in this empty PostgreSQL database (postgresql://USER@HOST:PORT/NAME) "
                   "instead of the embedded SQLite file: the demo on the city's backend (docs/issuer.md).")
def demo(out: Path, visitors: int, duration: float, seed: int, live: bool | None, screens: Path | None,
         database: str | None) -> None:
    """Issue, show and check City Pass codes of every kind; then run a city of gates end to end.

    Act 1 decides a code of every kind at the right kind of gate from a signed snapshot. Act 2 starts
    Mosquitto (TLS, ACLs) and the issuer's API, enrolls six gates (scenic spot, two museum lanes, metro
    entry and exit, bus reader) and runs them at once on rendered camera frames with simulated visitors;
    one gate loses its broker link midway. It ends with the issuer's reports and checks them; exit
    status 1 if any check fails."""
    from citypass.gate.imagefile import read_image_file

    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # keep the table readable in logs and CI output
    if screens is not None:
        _screens(console, screens)
        return
    if out.exists():
        shutil.rmtree(out)
    now = utc_now()
    iss = Issuer.init(IssuerHome(out / "issuer"), SITES, now - 86_400, database=database)
    click.get_current_context().call_on_close(iss.close)
    console.print(f"[bold]City Pass demo[/] — issuer initialised in {out / 'issuer'} at {format_time(now)}"
                  + (" (store: PostgreSQL)" if database else ""))
    phone = SigningKey.generate()
    steps = _steps(iss, phone, now) + _partner_steps(iss, phone, out / "partners", now)
    snapshot_path = out / "snapshot.cbor"
    snapshot_path.write_bytes(iss.export(now))
    snap = load_snapshot(snapshot_path.read_bytes(), iss.root_key().public)
    console.print(f"signed snapshot: {snapshot_path} (seq {snap.seq}, {len(snap.revoked)} revoked, "
                  f"{len(snap.trust.keys)} keys, {len(snap.trust.partners)} partner(s)), verified against the pinned "
                  "root key\n")
    ledgers: dict[str, MemoryLedger] = {}
    table = Table(title="Gate decisions", show_lines=False)
    for col in ("#", "presentation", "gate", "QR", "read by", "decision", "reason / 原因"):
        table.add_column(col)
    allowed = denied = 0
    for i, step in enumerate(steps, 1):
        text, read_by = step.code, "text"
        if step.via_image:
            png = out / "codes" / f"{i:02d}.png"
            png.parent.mkdir(parents=True, exist_ok=True)
            qr.render_png(step.code, png, scale=6)
            texts, decoder, _ms, _ = read_image_file(str(png))
            if texts != [step.code]:
                raise click.ClickException(f"the decoder did not read back {png}")
            text, read_by = texts[0], decoder
        settings = snap.site(step.site)
        assert settings is not None
        ledger = ledgers.setdefault(step.site, MemoryLedger(snap, clock_floor=now - 3600))
        decision = decide(text, ledger, GateContext(f"{step.site}-{step.direction}", settings, step.direction),
                          now + step.at_offset)
        ledger.record(decision, settings.number)
        partner = decision.verdict.partner
        if decision.allowed:
            allowed += 1
            verdict = f"[green]allow ×{decision.persons}[/] {decision.kind}"
            why = "请通行 / Welcome" + (f" (flags: {', '.join(decision.flags)})" if decision.flags else "")
            terms = decision.credential.terms if decision.credential else None
            if isinstance(terms, Benefit) and decision.benefit_left is not None:
                why += " — " + " / ".join(remaining_text(decision.benefit_left, terms.period))
        else:
            denied += 1
            assert decision.reason is not None
            verdict = "[red]deny[/]"
            why = f"{decision.reason.value}: {decision.reason.zh} / {decision.reason.en}"
        if partner is not None:
            why += f" [{decision.verdict.format.upper()} · {partner.name_zh} / {partner.name_en}]"
        table.add_row(str(i), step.label, f"{step.site} ({step.direction})", f"v{qr.version(step.code)}", read_by,
                      verdict, why)
    console.print(table)
    console.print(f"\n{allowed} allowed, {denied} denied. QR images in {out / 'codes'}; "
                  f"try: citypass gate check --snapshot {snapshot_path} --site west-lake {out / 'codes' / '01.png'}")
    from citypass.city.run import City, CityOptions, Clients
    from citypass.issuer.api import create_app
    from citypass.issuer.api.server import BackgroundServer
    from citypass.issuer.tokens import create_token
    from citypass.sync.broker import Broker
    from citypass.sync.endpoint import ClientFiles, Endpoint
    from citypass.sync.home import BrokerHome
    from citypass.sync.issuer_sync import IssuerSync
    from citypass.wiring.issuer import BrokerAuthority

    baseline = set(threading.enumerate())
    broker_home = BrokerHome(out / "broker").init()  # the issuer is the CA for device identity
    with ExitStack() as stack:
        broker = stack.enter_context(Broker(broker_home))
        broker_pid = broker.pid
        server = stack.enter_context(BackgroundServer(
            create_app(iss, authority=BrokerAuthority(broker_home, f"{broker.host}:{broker.port}"))))
        console.print(f"\n[bold]Issuer service[/] at {server.url} (OpenAPI: {server.url}/docs); "
                      f"Mosquitto (pid {broker_pid}) with TLS and per-device ACLs at {broker.host}:{broker.port}")

        def endpoint_for(cn: str) -> Endpoint:
            files = broker_home.add_service(cn, out_dir=out / "issuer-mqtt" / cn)
            assert isinstance(files, ClientFiles)
            return Endpoint(broker.host, broker.port, tls=files)

        def issuer_sync() -> IssuerSync:
            return IssuerSync(iss, endpoint_for, workers=2, group="demo-ingest")

        clients = [stack.enter_context(httpx.Client(base_url=server.url, headers={
            "Authorization": f"Bearer {create_token(iss.store, role, now, label='demo').text}"}))
            for role in ("issuer", "operator", "technician")]
        options = CityOptions(visitors=visitors, duration_s=duration, seed=seed,
                              live=console.is_terminal if live is None else live)
        try:
            city = City(console, out, Clients(*clients), (broker.host, broker.port), issuer_sync, options, broker_home)
            checks = city.run()
        except DemoError as exc:
            raise click.ClickException(str(exc)) from None
    _stopped(console, broker_pid, baseline, city.site_broker_pid)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise click.ClickException(f"{len(failed)} check(s) failed: {'; '.join(failed)}")


def _screens(console: Console, folder: Path) -> None:
    from citypass.city.showcase import write_screens
    from citypass.gate.logs import EventLog, library_logs

    console.print(f"[bold]What visitors see[/] — a lane and the wallet in Chromium; screenshots in {folder}:")
    try:
        with library_logs(EventLog(gate_id="screens", level="error")):  # the unplugged camera is part of the show
            written = write_screens(folder, lambda line: console.print(f"  {line}", highlight=False))
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"{len(written)} screenshots written")


def _stopped(console: Console, broker_pid: int | None, baseline: set[threading.Thread], site_pid: int | None,
             wait_s: float = 10) -> None:
    """Everything the demo started is gone: both Mosquitto processes (the city's and the museum's) have exited and
    no thread is left (they get ``wait_s`` to finish); otherwise a ClickException names what is still running."""
    deadline = time.monotonic() + wait_s
    while True:
        left = [t for t in threading.enumerate() if t not in baseline and t.is_alive()]
        alive = [pid for pid in (broker_pid, site_pid) if pid is not None and process_alive(pid)]
        if (not left and not alive) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if left or alive:
        raise click.ClickException(f"not everything stopped: Mosquitto pids {broker_pid}, {site_pid}: "
                                   f"{', '.join(map(str, alive)) or 'none'} still running; threads left: "
                                   f"{', '.join(t.name for t in left) or 'none'}")
    console.print(f"stopped everything it started: Mosquitto (pid {broker_pid}) exited, and the museum's (pid "
                  f"{site_pid}); the issuer API, ingest workers, link relay and every gate's daemon, sync and "
                  "visitor threads ended; 0 threads left")

