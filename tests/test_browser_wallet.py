"""The phone wallet in a real browser (Debian's Chromium, headless, driven by Playwright) against the issuer served
for real: claim → live code → a screenshot decoded by the gate's own decoder and decided by the gate's own core.

The page's clock is Playwright's (``page.clock``): moving it a minute on makes the page sign its next code a
minute later, exactly as a phone a minute later would, without the test sleeping for a minute. The gate's clock is
an argument of the decision core, so "the same screenshot 60 s later" is decided at that instant.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from citypass.city.browser import PHONE, Browser
from citypass.credential.claims import Period
from citypass.credential.codes import parse
from citypass.credential.keys import Alg
from citypass.credential.snapshot import load_snapshot
from citypass.gate.decision import GateContext, decide
from citypass.gate.decoders import DEFAULT_DECODER
from citypass.gate.imagefile import read_image_file
from citypass.gate.memory_ledger import MemoryLedger
from citypass.issuer import benefits
from citypass.issuer.testing import ServedIssuer, served_issuer
from tests.helpers.browser import browser, wait_js

__all__ = ["browser"]  # the fixture

pytestmark = pytest.mark.slow

LIVE = "document.body.dataset.state === 'live' && Number(document.body.dataset.generatedAt || 0)"
NO_ED25519 = """
const generate = crypto.subtle.generateKey.bind(crypto.subtle);
crypto.subtle.generateKey = (alg, ...rest) => ((alg && (alg.name || alg)) === 'Ed25519')
  ? Promise.reject(new DOMException('Ed25519 is not supported', 'NotSupportedError'))
  : generate(alg, ...rest);
"""
STORED_KEYS = """async () => {
  const db = await new Promise((ok, bad) => {
    const r = indexedDB.open('citypass-wallet'); r.onsuccess = () => ok(r.result); r.onerror = bad;
  });
  const all = await new Promise((ok) => {
    const r = db.transaction('passes').objectStore('passes').getAll(); r.onsuccess = () => ok(r.result);
  });
  const p = all[0];
  let exported = 'refused';
  try { await crypto.subtle.exportKey('pkcs8', p.keys.privateKey); exported = 'exported' } catch (e) {}
  return { n: all.length, alg: p.alg, extractable: p.keys.privateKey.extractable, exported };
}"""
SITES_ROW = """() => {
  const dt = [...document.querySelectorAll('#details dt')].find((d) => d.textContent.includes('适用景点'));
  const line = (s) => [s.lang, s.textContent.replace(/\\s+/g, ' ')];
  return dt ? Object.fromEntries([...dt.nextElementSibling.children].map(line)) : null;
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path_factory.mktemp("wallet-browser") / "issuer", now=int(time.time())) as s:
        yield s


def claim_link(served: ServedIssuer, **body: object) -> str:
    with served.client("issuer") as api:
        answer = api.post("/v1/passes", json={"holder": "wallet", **body})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["claim_url"])


def read_code(page: Any, tmp_path: Path, name: str) -> str:
    """Screenshot the phone and read it with the gate's own decoder (zxing-cpp, the gate's default)."""
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot))
    texts, decoder, _ms, problem = read_image_file(str(shot))
    assert decoder == DEFAULT_DECODER and len(texts) == 1 and problem is None, (decoder, texts, problem)
    return texts[0]


def at_gate(served: ServedIssuer, text: str, site: str, now: int) -> tuple[bool, str | None]:
    snap = load_snapshot(served.issuer.export(served.clock.now), served.issuer.root_key().public)
    settings = snap.site(site)
    assert settings is not None
    d = decide(text, MemoryLedger(snap, clock_floor=served.clock.now - 3600), GateContext(f"{site}-in", settings), now)
    return d.allowed, d.reason.value if d.reason else None


def test_claim_live_code_screenshot_expiry_refresh_second_claim_and_offline(
        served: ServedIssuer, browser: Browser, tmp_path: Path) -> None:
    link = claim_link(served, product="transit", account="13800000000", modes=["metro", "bus"])
    phone = browser.context(PHONE)
    requests: list[str] = []
    phone.on("request", lambda r: requests.append(r.url))
    page = phone.new_page()
    page.clock.install()  # the page's time runs normally until the test moves it
    started = time.monotonic()
    page.goto(link)
    first_at = wait_js(page, LIVE, timeout=5, what="a live code within 5 s of opening the claim link")
    shown_after = time.monotonic() - started
    assert "#claim" not in page.url  # the secret left the address bar and the history

    # the phone's screen, as a camera would see it: read by the gate's decoder, decided by the gate's core
    first = read_code(page, tmp_path, "first")
    parsed = parse(first)
    assert parsed.dynamic and parsed.generated_at == first_at
    assert parsed.credential.holder is not None and parsed.credential.holder.key.alg is Alg.EDDSA
    assert at_gate(served, first, "metro-longxiangqiao", first_at + 2) == (True, None)
    assert at_gate(served, first, "metro-longxiangqiao", first_at + 60) == (False, "presentation_expired")
    stored = page.evaluate(STORED_KEYS)
    assert stored == {"n": 1, "alg": "Ed25519", "extractable": False, "exported": "refused"}
    assert "请调高屏幕亮度" in page.inner_text("#brightness") and "Turn up your screen brightness" in page.inner_text(
        "#brightness")
    assert "交通乘车码" in page.inner_text("#product") and "地铁 · 公交" in page.inner_text("#details")
    assert "秒后刷新" in page.inner_text("#countdown")

    # a minute later the page has signed a fresh code: admitted, though the screenshot is not
    page.clock.fast_forward(60_000)
    later_at = wait_js(page, f"({LIVE}) >= {first_at + 60} && Number(document.body.dataset.generatedAt)",
                       what="a fresh code a minute later")
    fresh = read_code(page, tmp_path, "fresh")
    assert fresh != first and parse(fresh).generated_at == later_at
    assert at_gate(served, fresh, "metro-longxiangqiao", later_at + 1) == (True, None)
    assert at_gate(served, first, "metro-longxiangqiao", later_at + 1) == (False, "presentation_expired")

    # the claim link opened on another phone: refused, no code
    other = browser.context(PHONE).new_page()
    other.goto(link)
    wait_js(other, "document.body.dataset.state === 'refused'", what="the second claim to be refused")
    assert "此领取链接已被使用或已失效" in other.inner_text("#message")
    assert other.evaluate("document.getElementById('pass').hidden") is True

    # nothing but the issuer's own origin was ever asked for (no CDN)
    origin = served.url
    assert requests and all(u.startswith(origin) or u.startswith(("data:", "blob:")) for u in requests), requests

    # with the network gone, the page still starts and shows a live code
    wait_js(page, "navigator.serviceWorker.controller !== null", what="the service worker to take the page")
    served.server.stop()  # the issuer is unreachable now, and the phone offline too
    phone.set_offline(True)
    with pytest.raises(httpx.TransportError):
        httpx.get(origin + "/healthz", timeout=2)
    page.reload()
    offline_at = wait_js(page, LIVE, what="a live code after an offline reload")
    offline = read_code(page, tmp_path, "offline")
    assert parse(offline).generated_at == offline_at
    assert at_gate(served, offline, "metro-longxiangqiao", offline_at + 1) == (True, None)
    print(f"\nwallet: live code {shown_after * 1000:.0f} ms after opening the claim link")


@pytest.fixture(scope="module")
def served_p256(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path_factory.mktemp("wallet-p256") / "issuer", now=int(time.time())) as s:
        yield s


def test_a_browser_without_ed25519_makes_a_p256_key_and_a_benefit_cards_uses_left_stay_live(
        served_p256: ServedIssuer, browser: Browser, tmp_path: Path) -> None:
    """P-256 where the browser lacks Ed25519; and a benefit card (惠民卡) whose uses left the page asks the issuer
    for with a fresh presentation whenever it is online, and shows with the time of that count when offline."""
    served_p256.clock.now = int(time.time())  # the issuer judges the page's presentations by its clock
    with served_p256.client("operator") as api:
        for name, title, title_en in (("zhejiang-museum", "浙江省博物馆", "Zhejiang Provincial Museum"),
                                      ("lingyin", "灵隐寺", "Lingyin Temple")):
            edited = api.patch(f"/v1/sites/{name}", json={"title": title, "title_en": title_en})
            assert edited.status_code == 200, edited.text
    link = claim_link(served_p256, product="benefit", sites=["zhejiang-museum", "lingyin"], quota=4)
    phone = browser.context(PHONE)
    phone.add_init_script(NO_ED25519)
    page = phone.new_page()
    page.goto(link)
    at = wait_js(page, LIVE, timeout=5, what="a live code")
    code = read_code(page, tmp_path, "p256")
    cred = parse(code).credential
    assert cred.holder is not None and cred.holder.key.alg is Alg.ES256  # WebCrypto's r || s is COSE's ES256
    assert page.evaluate(STORED_KEYS)["alg"] == "ES256"
    assert at_gate(served_p256, code, "zhejiang-museum", at + 1) == (True, None)
    # 适用景点 / Valid at: each line names the sites in its own language (by site number), never by their slugs
    row = page.evaluate(SITES_ROW)
    assert row == {"zh": "灵隐寺 · 浙江省博物馆", "en": "Lingyin Temple · Zhejiang Provincial Museum"}, row
    assert not any(slug in line for line in row.values() for slug in ("lingyin", "zhejiang-museum")), row

    live = "document.body.dataset.benefitLive === 'true' && document.body.dataset.benefitLeft === '{n}'"
    wait_js(page, live.format(n=4), what="the uses left, counted by the issuer")
    details = page.inner_text("#details")
    assert "惠民卡 · 本月剩余 4 次" in details and "Benefit card · 4 uses left this month" in details
    assert "截至" not in details
    # a gate's upload reaches the centre: back online, the page asks again and shows the new count
    served_p256.clock.now = int(time.time())
    benefits.count_use(served_p256.issuer.store, cred.id.hex(), 4, Period.MONTH, served_p256.clock.now,
                       "tap:museum-in:1", "tap", "museum-in", 3)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    wait_js(page, live.format(n=3), what="the new count after a use")
    counted_at = served_p256.clock.now
    assert "惠民卡 · 本月剩余 3 次" in page.inner_text("#details")

    # offline (the page reloaded from its service worker): the last count, with when the issuer made it
    wait_js(page, "navigator.serviceWorker.controller !== null", what="the service worker to take the page")
    phone.set_offline(True)
    page.reload()
    wait_js(page, LIVE, what="a live code offline")
    wait_js(page, "document.body.dataset.benefitLive === 'false' && document.body.dataset.benefitLeft === '3'",
            what="the last count, shown offline")
    assert page.evaluate("document.body.dataset.benefitAsOf") == str(counted_at)
    offline = page.inner_text("#details")
    assert "惠民卡 · 本月剩余 3 次 · 截至" in offline and "（离线）" in offline
    assert "Benefit card · 3 uses left this month · as of" in offline and "(offline)" in offline
    page.screenshot(path=str(tmp_path / "benefit-offline.png"))
