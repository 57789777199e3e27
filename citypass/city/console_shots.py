"""``citypass issuer console-screenshots DIR``: a picture of each console page, for docs/console.md.

A small city day (:func:`citypass.issuer.console.sample.populate`: a dozen sites, a few thousand taps, a dozen
tour groups) in a scratch issuer home, the issuer served for real, an operator logged in through the login form
in headless Chromium, then each page captured as a PNG — the live page while taps are being taken in.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import click

from citypass.city.browser import Browser
from citypass.issuer.api import create_app
from citypass.issuer.api.server import BackgroundServer
from citypass.issuer.console import sample
from citypass.issuer.home import IssuerHome
from citypass.issuer.records import TapEvent
from citypass.issuer.service import Issuer
from citypass.issuer.tokens import create_token

DESKTOP = {"viewport": {"width": 1200, "height": 760}}
SHOTS = ("login", "city", "live", "incidents", "devices", "passes", "venues", "groups", "group")


def _feed(issuer: Issuer, site: str, number: int, stop: threading.Event) -> None:
    """Taps arriving while the live page is open (one every 150 ms at one site's entry)."""
    n = 0
    while not stop.is_set():
        now = int(time.time())
        tap_id = f"shot-{n:06d}"
        sample.ingest_all(issuer, iter([TapEvent(f"{tap_id}-e", tap_id, "tap", {
            "gate_id": f"{site}-in", "site": number, "direction": "entry",
            "decision": "deny" if n % 5 == 4 else "allow", "reason": "expired" if n % 5 == 4 else None,
            "flags": [], "credential_id": f"{0x5107 + n:016x}",
            "product": 1, "persons": 1 if n % 5 != 4 else 0, "kind": None if n % 5 == 4 else "entry",
            "presentation_id": None, "at": now}, now)]), lambda e: int(time.time()))
        n += 1
        stop.wait(0.15)


def take(directory: Path, *, lang: str = "zh-CN") -> list[Path]:
    """Write one PNG per page into ``directory``; the paths written."""
    import tempfile

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="citypass-console-shots-") as scratch:
        now = int(time.time())
        issuer = Issuer.init(IssuerHome(Path(scratch) / "issuer"), [], now=now - 4 * 86_400)
        try:
            city = sample.populate(issuer, now=now, sites=12, taps=4000, groups=12)
            revoked = next(s.credential_id for s in issuer.store.group(city.groups[1]).stops if s.credential_id)
            assert revoked is not None
            issuer.revoke(revoked, now, "agency cancelled the tour")
            token = create_token(issuer.store, "operator", now, label="screenshots").text
            site = next(s for s in issuer.store.sites() if s.kind.value != "metro")
            with BackgroundServer(create_app(issuer, limits=None)) as server, Browser(lang=lang) as browser:
                page = browser.page(DESKTOP)

                def shot(name: str) -> None:
                    path = directory / f"console-{name}.png"
                    page.screenshot(path=str(path))
                    written.append(path)

                page.goto(server.url + "/console/login")
                shot("login")
                page.fill("input[name=token]", token)
                page.click("form.login button[type=submit]")
                page.wait_for_url("**/console/city")
                shot("city")
                # The stream opens on the taps received in its last 2 s: let the sample's own (just ingested) age
                # out of that window, so the live page shows the feed's taps — allowed and denied — as they arrive.
                time.sleep(2.5)
                stop = threading.Event()
                feeder = threading.Thread(target=_feed, args=(issuer, site.name, site.number, stop), daemon=True)
                page.goto(server.url + "/console/live")
                feeder.start()
                deadline = time.monotonic() + 15  # polled: the page's policy forbids wait_for_function's eval
                while page.evaluate("document.querySelectorAll('#live-taps tbody tr').length") < 12:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the live page showed no taps in 15 s")
                    time.sleep(0.1)
                stop.set()
                feeder.join(5)
                shot("live")
                for name, path in (("incidents", "/console/incidents"), ("devices", "/console/devices"),
                                   ("passes", f"/console/passes?q={revoked}"), ("venues", "/console/venues"),
                                   ("groups", "/console/groups"), ("group", f"/console/groups/{city.groups[0]}")):
                    page.goto(server.url + path)
                    shot(name)
        finally:
            issuer.close()
    return written


@click.command("console-screenshots")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--lang", type=click.Choice(["zh-CN", "en"]), default="zh-CN", show_default=True)
def console_screenshots(directory: Path, lang: str) -> None:
    """Write a screenshot of each console page (a small simulated city day) into DIRECTORY."""
    for path in take(directory, lang=lang):
        click.echo(f"{path} ({path.stat().st_size // 1024} KiB)")
