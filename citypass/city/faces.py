"""What the city act shows visitors: one lane's result screen served for a kiosk browser, and a visitor whose
phone is the wallet page in a real Chromium (:mod:`citypass.city.walletphone`), presenting a live code the
browser signed."""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import httpx
from rich.console import Console

from citypass.city.browser import BrowserThread, why_missing
from citypass.city.http import ok
from citypass.city.lane import Lane
from citypass.city.script import BUS, Card, Phase, Visit, allow
from citypass.city.walletphone import WalletPhone
from citypass.gate.config import GateConfig

SCREEN_TITLE = {"zh": "西湖", "en": "West Lake"}


def with_screen(cfg: GateConfig) -> GateConfig:
    """``cfg`` with /healthz and the lane's screen served on a free local port."""
    return cfg.model_copy(update={
        "health": cfg.health.model_copy(update={"enabled": True, "host": "127.0.0.1", "port": 0}),
        "screen": cfg.screen.model_copy(update={"enabled": True, "title": SCREEN_TITLE}),
    })


def print_addresses(console: Console, api: httpx.Client, lane: Lane) -> None:
    wallet = str(api.base_url.join("/wallet/"))
    console.print(f"visitors' pages: the wallet at [bold]{wallet}[/] (claim links from POST /v1/passes with "
                  f"\"holder\": \"wallet\"); {lane.gate_id}'s screen at "
                  f"[bold]http://127.0.0.1:{lane.health_port}/screen[/] (open it in a browser while the city runs)")


def print_console_address(console: Console, operator: httpx.Client, out: Path) -> None:
    """Where the operators' console is, and where the operator token to log in with was written (0600)."""
    token_file = out / "operator-token.txt"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(operator.headers["Authorization"].removeprefix("Bearer ") + "\n")
    console.print(f"operators' console: [bold]{operator.base_url.join('/console/')}[/] (log in with the operator "
                  f"token in {token_file}; tour groups, live taps, incidents while the city runs)")


def add_wallet_visitor(console: Console, api: httpx.Client, stack: ExitStack, phases: list[Phase]) -> bool:
    """Order a bus pass for a wallet, claim it in Chromium and add its rider to the first phase (at the bus).
    False, said on the console, when this machine has no browser to drive."""
    problem = why_missing()
    if problem is not None:
        console.print(f"[yellow]no visitor with a browser wallet: {problem}[/]")
        return False
    browser = BrowserThread().start()
    stack.callback(browser.stop)
    order = ok(api.post("/v1/passes", json={"product": "transit", "account": "13900000000", "modes": ["bus"],
                                            "holder": "wallet"}))
    phone = WalletPhone(browser, order["claim_url"]).claim()
    console.print(f"a visitor opened a claim link in Chromium: the wallet page made its key with WebCrypto "
                  f"({phone.alg}), claimed bus pass {phone.credential_id[:8]} with it and shows a live code")
    card = Card(phone.code, phone.credential_id, picture=phone.picture)
    visit = Visit("bus rider, wallet page in Chromium", BUS, card, allow(), "clean", "live")
    phases[0] = replace(phases[0], visits=(*phases[0].visits, visit))
    return True
