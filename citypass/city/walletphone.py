"""A visitor whose phone is a real browser: the wallet page in Chromium, claimed from a claim link.

The demo orders a pass for a wallet through the issuer's API (``"holder": "wallet"``), opens the claim link in a
phone-sized Chromium page — the page makes the holder key with WebCrypto, registers it, keeps the credential in
IndexedDB — and then, each time the visitor holds the phone up, takes a screenshot of the live code as the page
shows it at that moment. The gate reads that picture with its camera pipeline like any other: the code a gate
admits was signed by the browser.
"""

from __future__ import annotations

import time
from typing import Any

from citypass.city.browser import PHONE, Browser, BrowserThread
from citypass.city.http import DemoError
from citypass.city.screenlane import picture
from citypass.gate.camera.base import Image

LIVE = "document.body.dataset.state === 'live' && Number(document.body.dataset.generatedAt || 0)"
STORED = """async () => {
  const db = await new Promise((ok, bad) => {
    const r = indexedDB.open('citypass-wallet'); r.onsuccess = () => ok(r.result); r.onerror = bad;
  });
  const all = await new Promise((ok) => {
    const r = db.transaction('passes').objectStore('passes').getAll(); r.onsuccess = () => ok(r.result);
  });
  return all.map((p) => ({ code: p.code, credentialId: p.credentialId, alg: p.alg }));
}"""


def wait_live(page: Any, timeout: float = 10.0) -> int:
    """Wait until the page shows a live code; its ``generated_at``."""
    deadline = time.monotonic() + timeout
    while True:
        at = page.evaluate(LIVE)
        if at:
            return int(at)
        if time.monotonic() > deadline:
            says = page.evaluate("document.body.innerText")
            raise DemoError(f"the wallet page shows no live code; it says: {says!r}")
        time.sleep(0.05)


class WalletPhone:
    """A phone running the wallet page, in a :class:`BrowserThread` (any thread may ask for its picture)."""

    def __init__(self, browser: BrowserThread, claim_url: str) -> None:
        self.browser = browser
        self.claim_url = claim_url
        self._page: Any = None
        self.code = ""
        self.credential_id = ""
        self.alg = ""

    def claim(self) -> WalletPhone:
        """Open the claim link and wait for the live code; keeps the claimed credential's code and id."""

        def open_page(b: Browser) -> dict[str, str]:
            self._page = b.page(PHONE)
            self._page.goto(self.claim_url)
            wait_live(self._page)
            stored: list[dict[str, str]] = self._page.evaluate(STORED)
            return stored[0]

        kept = self.browser.call(open_page)
        self.code, self.credential_id, self.alg = kept["code"], kept["credentialId"], kept["alg"]
        return self

    def screenshot(self) -> bytes:
        """The live code as the page shows it now (PNG of the code and its countdown)."""

        def shoot(_: Browser) -> bytes:
            wait_live(self._page)
            png: bytes = self._page.locator("#code").screenshot()
            return png

        return self.browser.call(shoot)

    def picture(self) -> Image:
        """The phone held up to a camera: the screenshot in a camera frame (1280x720, as the city's lanes see)."""
        return picture(self.screenshot(), (1280, 720))
