"""Debian's Chromium driven by Playwright, for the browser tests: a module-wide browser, and waiting on a page.

A page that forbids ``eval`` in its content security policy (ours do) also forbids Playwright's
``wait_for_function``, which compiles its predicate inside the page; :func:`wait_js` polls with ``evaluate``
instead, which runs through the DevTools protocol and leaves the page's policy as it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from citypass.city.browser import Browser, why_missing


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    problem = why_missing()
    if problem is not None:
        pytest.skip(f"no browser to test in: {problem}")
    with Browser(lang="zh-CN") as b:
        yield b


def wait_js(page: Any, expression: str, timeout: float = 10.0, what: str | None = None) -> Any:
    """Poll ``expression`` (a JS expression or an arrow function) until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what or expression}; the page says: "
                        f"{page.evaluate('document.body.innerText')[:300]!r}")
        time.sleep(0.02)
