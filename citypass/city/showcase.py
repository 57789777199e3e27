"""``citypass demo --screens DIR``: screenshots of everything a visitor sees, taken in a real browser.

A lane at a scenic spot runs for real (:class:`~citypass.city.screenlane.ScreenLane`: the daemon on a memory camera
and mock pins, its screen served at ``/screen``) and the issuer's API serves the wallet. Chromium opens the screen
as a lane display would and a claim link as a phone would; then the lane is driven through each of its states —
a phone held up with the wallet's live code (admitted), the same pass again (admitted and flagged: soft
anti-passback), a party of three, a code from an unknown issuer, the fire alarm, the camera unplugged — and each
is captured once the page shows it. The files (PNG) are what docs/screen.md and docs/wallet.md show.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from citypass.city.browser import PHONE, Browser, why_missing
from citypass.city.http import DemoError
from citypass.city.screenlane import ScreenLane, lane_config, lane_scene, picture
from citypass.city.walletphone import wait_live
from citypass.issuer.api import create_app
from citypass.issuer.api.server import BackgroundServer
from citypass.issuer.wallet.claims import offer

#: The lane display the docs show (the page scales its text with the screen; nothing is smaller than 48 px).
DISPLAY = {"viewport": {"width": 1280, "height": 720}, "device_scale_factor": 1}


def _until(page: Any, expression: str, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise DemoError(f"the page did not show {what} within {timeout:.0f} s")
        time.sleep(0.05)


def write_screens(out: Path, say: Callable[[str], None]) -> list[Path]:
    """Write the screenshots into ``out``; returns the files, in the order taken."""
    problem = why_missing()
    if problem is not None:
        raise DemoError(f"no browser to take the screenshots with: {problem}")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="citypass-screens-") as tmp:
        home = Path(tmp)
        now = int(time.time())
        scene = lane_scene(home, now)
        with ScreenLane(lane_config(home, scene)) as lane, BackgroundServer(create_app(scene.issuer)) as api, \
                Browser(lang="zh-CN") as browser:
            screen = browser.page(DISPLAY)
            screen.goto(lane.url + "/screen")
            _until(screen, "document.body.dataset.kind === 'idle'", "the idle screen")

            def shot(name: str, page: Any = screen) -> None:
                path = out / f"{name}.png"
                page.screenshot(path=str(path))
                written.append(path)
                say(f"{path}")

            def shown(kind: str, since: int) -> None:
                _until(screen, f"window.__screen.log.slice({since}).some(e => e.kind === '{kind}' && e.shown)", kind)

            def logged() -> int:
                return int(screen.evaluate("window.__screen.log.length"))

            shot("screen-idle")
            # the wallet: claimed on a phone, then held up to this lane's camera
            link = offer(scene.issuer, scene.issuer.annual_order(["west-lake"], now), now).url(api.url + "/wallet/")
            phone = browser.page(PHONE)
            phone.goto(link)
            generated = wait_live(phone)
            shot("wallet", phone)
            since = logged()
            admitted = lane.present(image=picture(phone.locator("#code").screenshot()))
            if not admitted.decision.allowed:
                raise DemoError(f"the lane refused the wallet's code: {admitted.decision.reason}")
            shown("allow", since)
            shot("screen-allow")
            lane.walk(1)
            # the same live code again would be a replay: the visitor waits for the page's next one
            _until(phone, f"Number(document.body.dataset.generatedAt) > {generated}", "a fresh live code")
            since = logged()
            again = lane.present(image=picture(phone.locator("#code").screenshot()))
            if not again.decision.allowed or not again.decision.flags:
                raise DemoError(f"the second entry was not allowed and flagged: {again.decision.reason}")
            shown("flag", since)
            shot("screen-flag")
            lane.walk(1)
            other = browser.page(PHONE)
            other.goto(link)
            _until(other, "document.body.dataset.state === 'refused'", "the refused claim")
            shot("wallet-refused", other)

            since = logged()
            lane.present(scene.party)
            shown("allow", since)
            shot("screen-party")
            lane.walk(3)
            since = logged()
            lane.present(scene.forged)
            shown("deny", since)
            shot("screen-deny")

            lane.fire_alarm(True)
            _until(screen, "document.body.dataset.kind === 'fire'", "the fire alarm")
            shot("screen-fire")
            lane.fire_alarm(False)
            _until(screen, "document.body.dataset.kind === 'idle'", "idle after the fire alarm")
            lane.camera(False)
            _until(screen, "document.body.dataset.kind === 'out_of_order'", "out of order")
            shot("screen-out-of-order")
            lane.camera(True)
    return written
