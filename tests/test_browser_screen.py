"""The lane's result screen in a real browser (Debian's Chromium, headless, driven by Playwright), fed by a running
gate daemon — built and served by the daemon's own wiring, on a memory camera and gpiozero mock pins.

For each outcome the test reads what the page shows (text, colours, font sizes, icon, tone) and measures when it
showed it against the relay's moment, which the daemon stamps on the event (both clocks are this machine's).
The brief asks for 100 ms. All events but the slowest must *arrive* within 100 ms of the relay, and the moment
they are *painted* (the first animation frame after arrival) is held to a median of 100 ms; no event may take
more than 500 ms either way. The room for one straggler is for a two-core machine shared with other work (a
push that waited on anything — a poll, a timer, a buffer — would fail every event); the figures are printed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from citypass.city.browser import LANE_DISPLAY, Browser
from citypass.city.screenlane import ScreenLane, lane_config, lane_scene
from tests.helpers.browser import browser, wait_js

__all__ = ["browser"]  # the fixture

pytestmark = pytest.mark.slow

#: The page's state as the test reads it: what it says, its colours and its smallest text.
READ = """() => {
  const body = getComputedStyle(document.body);
  const texts = [...document.querySelectorAll('#screen .title, #screen .detail, footer')]
    .filter((el) => el.textContent.trim());
  return {
    kind: document.body.dataset.kind,
    text: document.getElementById('screen').innerText,
    icon: document.getElementById('icon').textContent,
    arrow: document.getElementById('arrow').textContent,
    site: document.getElementById('site').textContent,
    background: body.backgroundColor,
    color: getComputedStyle(document.querySelector('#screen .title') || document.body).color,
    smallest: Math.min(...texts.map((el) => parseFloat(getComputedStyle(el).fontSize))),
  };
}"""
ALLOWS = 8


def luminance(css: str) -> float:
    """WCAG relative luminance of ``rgb(r, g, b)``."""
    r, g, b = (int(x) / 255 for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.fixture(scope="module")
def lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ScreenLane, Any]]:
    home = tmp_path_factory.mktemp("screen")
    scene = lane_scene(home, int(time.time()))
    with ScreenLane(lane_config(home, scene)) as running:
        yield running, scene


def shown(page: Any, since: int, kind: str) -> dict[str, Any]:
    """Wait for the page to have painted a ``kind`` event logged after the first ``since``; that log entry."""
    entry: dict[str, Any] = wait_js(
        page, f"window.__screen.log.slice({since}).find(e => e.kind === '{kind}' && e.shown)",
        timeout=5, what=f"the screen to show {kind}")
    return entry


def logged(page: Any) -> int:
    """How many events the page has logged (a restarted daemon numbers its events afresh)."""
    return int(page.evaluate("window.__screen.log.length"))


def check_readable(state: dict[str, Any]) -> None:
    assert state["smallest"] >= 48, state
    assert contrast(state["background"], state["color"]) >= 7, state


def test_the_screen_shows_every_outcome_within_100_ms_of_the_relay_and_survives_restarts(
        lane: tuple[ScreenLane, Any], browser: Browser, tmp_path: Path) -> None:
    gate, scene = lane
    page = browser.page(LANE_DISPLAY)
    page.goto(gate.url + "/screen")
    wait_js(page, "document.body.dataset.kind === 'idle'", what="the idle screen")
    idle = page.evaluate(READ)
    assert "请出示二维码" in idle["text"] and "Show your code" in idle["text"] and idle["icon"] == "↓"
    assert idle["site"] == "西湖 · West Lake"
    check_readable(idle)

    # allow, a party, allowed-with-flag (soft anti-passback), deny: each with its colour, icon, words and tone
    first = gate.present(scene.annual)
    assert first.decision.allowed and "relay" in first.stages
    entry = shown(page, 0, "allow")
    allow = page.evaluate(READ)
    assert allow["icon"] == "✓" and "请通行" in allow["text"] and "Welcome" in allow["text"]
    assert allow["background"] == "rgb(0, 85, 46)"
    check_readable(allow)
    gate.walk(1)

    seq = logged(page)
    again = gate.present(scene.annual)
    assert again.decision.allowed and [f.value for f in again.decision.flags] == ["passback"]
    shown(page, seq, "flag")
    flag = page.evaluate(READ)
    assert flag["icon"] == "!" and "刚刚已入园" in flag["text"] and "Entered recently" in flag["text"]
    assert flag["background"] == "rgb(255, 196, 0)" and flag["color"] == "rgb(0, 0, 0)"
    check_readable(flag)
    gate.walk(1)

    seq = logged(page)
    party = gate.present(scene.party)
    assert party.decision.persons == 3
    shown(page, seq, "allow")
    assert "3 人通行" in page.evaluate(READ)["text"] and "3 people may pass" in page.evaluate(READ)["text"]
    gate.walk(3)

    seq = logged(page)  # a benefit card (惠民卡): admitted, with the uses it has left this month
    card = gate.present(scene.benefit_code(int(time.time())))
    assert card.decision.allowed and card.decision.benefit_left == 3
    shown(page, seq, "allow")
    benefit = page.evaluate(READ)
    assert "惠民卡 · 本月剩余 3 次" in benefit["text"] and "Benefit card · 3 uses left this month" in benefit["text"]
    check_readable(benefit)
    gate.walk(1)

    seq = logged(page)
    forged = gate.present(scene.forged)
    assert not forged.decision.allowed
    shown(page, seq, "deny")
    deny = page.evaluate(READ)
    assert deny["icon"] == "✗" and "签发机构未知" in deny["text"] and "Unknown issuer key" in deny["text"]
    assert "请联系工作人员" in deny["text"] and "Please ask a member of staff" in deny["text"]  # what to do
    assert deny["background"] == "rgb(160, 0, 22)"
    check_readable(deny)
    page.screenshot(path=str(tmp_path / "deny.png"))

    tones = page.evaluate("window.__screen.tones")
    by_kind = {t["kind"]: tuple(tuple(n) for n in t["notes"]) for t in tones}
    assert {"allow", "flag", "deny"} <= set(by_kind) and len({by_kind[k] for k in ("allow", "flag", "deny")}) == 3

    # the 100 ms: more allowed visitors, each a new pass, timed from the relay to the page
    timings = [entry]
    for _ in range(ALLOWS - 1):
        seq = logged(page)
        outcome = gate.present(scene.issuer.mint_annual(["west-lake"], int(time.time())))
        assert outcome.decision.allowed
        timings.append(shown(page, seq, "allow"))
        gate.walk(1)
    received = [e["received"] - e["at"] * 1000 for e in timings]
    painted = [e["shown"] - e["at"] * 1000 for e in timings]
    print(f"\nscreen: relay → event received p50 {statistics.median(received):.1f} ms, max {max(received):.1f} ms; "
          f"relay → painted p50 {statistics.median(painted):.1f} ms, max {max(painted):.1f} ms "
          f"({len(timings)} allowed visitors)")  # shown with -s, and with a failure
    assert min(received) >= 0 and sorted(received)[-2] <= 100 and max(received) <= 500, received
    assert statistics.median(painted) <= 100 and max(painted) <= 500, painted

    # fire alarm: free passage, the way out, a tone; cleared: back to idle
    gate.fire_alarm(True)
    wait_js(page, "document.body.dataset.kind === 'fire'", what="the fire alarm screen")
    fire = page.evaluate(READ)
    assert fire["icon"] == "⚠" and fire["arrow"] == "↑"  # the way out through the lane
    assert "紧急疏散" in fire["text"] and "exit this way" in fire["text"]
    check_readable(fire)
    assert "fire" in {t["kind"] for t in page.evaluate("window.__screen.tones")}
    gate.fire_alarm(False)
    wait_js(page, "document.body.dataset.kind === 'idle'", what="idle after the fire alarm")

    # the camera stops delivering: out of order until it is back
    gate.camera(False)
    wait_js(page, "document.body.dataset.kind === 'out_of_order'", what="out of order")
    broken = page.evaluate(READ)
    assert broken["icon"] == "⊘" and "扫描设备故障" in broken["text"] and "Please use another lane" in broken["text"]
    check_readable(broken)
    gate.camera(True)
    wait_js(page, "document.body.dataset.kind === 'idle'", timeout=15, what="idle once the camera is back")

    # the daemon restarts (quickly, then with a longer outage): the page reconnects by itself
    connects = page.evaluate("window.__screen.connects")
    gate.restart()
    wait_js(page, f"window.__screen.connects > {connects}", what="the screen to reconnect after a restart")
    seq = logged(page)
    after = gate.present(scene.issuer.mint_annual(["west-lake"], int(time.time())))
    assert after.decision.allowed
    late = shown(page, seq, "allow")
    assert late["received"] - late["at"] * 1000 <= 100
    gate.walk(1)

    connects = page.evaluate("window.__screen.connects")
    gate.stop_daemon()
    wait_js(page, "document.body.innerText.includes('显示屏未连接闸机')", timeout=10,
            what="the screen to say it lost the gate")
    assert page.evaluate(READ)["kind"] == "out_of_order"
    gate.restart()
    wait_js(page, f"window.__screen.connects > {connects} && document.body.dataset.kind === 'idle'", timeout=10,
            what="the screen back on the new daemon")
