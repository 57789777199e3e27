"""The demo's second act: a real gate daemon deciding on camera-style frames.

A museum entrance gate is built by the daemon's own wiring point (:func:`gate.wiring.build_daemon`)
from a config: SQLite ledger loaded from the issuer's signed snapshot, the zxing decoder, a barrier on
gpiozero mock pins, and a camera whose frames come through a memory feed — rendered phone screens held
up at an angle, under glare, in dark mode, blurred. A visitor simulator pushes those frames, watches the
relay pin and breaks the passage beam for the people who walk through (some turn back: their unused
entries are annulled, the ticket is not burned).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gpiozero.pins.mock import MockFactory
from rich.console import Console
from rich.table import Table

from bench.frames import synth_frame
from credential import SigningKey, present
from gate.camera import forget_feed, memory_feed
from gate.config import GateConfig
from gate.daemon import Outcome
from gate.ledger import GateLedger
from gate.wiring import build_daemon
from issuer.service import Issuer

SIZE = (1280, 720)
FEED = "demo-museum"


@dataclass(frozen=True)
class Visitor:
    label: str
    code: str
    condition: str
    walkers: int  # how many people actually walk through if the gate opens


def _visitors(iss: Issuer, now: int) -> list[Visitor]:
    family = iss.mint_reservation("zhejiang-museum", now - 600, now + 3000, 3, now)
    couple = iss.mint_reservation("zhejiang-museum", now - 600, now + 3000, 2, now)
    annual = iss.mint_annual(["west-lake"], now - 3600)
    phone = SigningKey.generate()
    bound = iss.mint_reservation("zhejiang-museum", now - 600, now + 3000, 1, now, holder=phone.public)
    forged_base = iss.mint_reservation("zhejiang-museum", now - 600, now + 3000, 1, now)
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


def run_gate_demo(console: Console, out: Path, iss: Issuer, snapshot: Path, now: int) -> None:
    cfg = GateConfig.model_validate({
        "gate_id": "museum-entrance-1", "site": "zhejiang-museum", "root_key": str(iss.home.root_pub_path),
        "snapshot": str(snapshot), "ledger": {"path": str(out / "gate-museum.db")}, "pins": "mock",
        "camera": {"source": f"memory:{FEED}", "width": SIZE[0], "height": SIZE[1], "fps": 30},
        "barrier": {"passage_timeout_s": 1.5, "open_per_person_s": 1.0, "sensor_bounce_s": None},
        "decision": {"leave_after_s": 0.4}, "health": {"enabled": False}, "log_level": "warning",
    })
    pins = MockFactory()
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    feed = memory_feed(FEED, maxsize=2)
    daemon = build_daemon(cfg, pin_factory=pins, observer=outcomes.put)
    rows: list[list[str]] = []
    visitors = _visitors(iss, now)

    def simulate() -> None:
        """The visitors, on their own thread: the gate loop owns the main thread (and the ledger)."""
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
        finally:
            daemon.stop()

    console.print(f"\n[bold]A gate on camera frames[/] — {daemon.ctx.site.name}, ledger {cfg.ledger.path}")
    visitor_thread = threading.Thread(target=simulate, name="visitors", daemon=True)
    visitor_thread.start()
    try:
        daemon.run()
    finally:
        visitor_thread.join(timeout=5)
        forget_feed(FEED)
    table = Table(title="Museum entrance gate: camera frames → decision → barrier")
    for col in ("visitor", "frames", "decision", "reason / 原因", "persons", "walked", "frame→relay"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    _summary(console, cfg)


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


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():  # type: ignore[operator]
        time.sleep(0.02)
