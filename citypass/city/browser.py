"""A real browser for the demo and the tests: Debian's Chromium, headless, driven by Playwright.

Playwright never downloads a browser here: it drives the system's ``/usr/bin/chromium`` (``scripts/bootstrap.sh``
installs Debian's ``chromium`` package when it is missing). Each :class:`Browser` runs in a new, empty profile
folder with the flags a headless Chromium needs on a server without a network of its own — no sandbox (we run as
root), no GPU, and none of the background traffic (component updates, sync, safe-browsing lists) it would
otherwise start at every launch.

Playwright's synchronous API is bound to the thread that started it; :class:`BrowserThread` runs a browser on
a thread of its own and takes jobs from any thread (the demo's gate lanes ask it for the phone's screen).

    >>> problem = why_missing()
    >>> problem is None or "not installed" in problem
    True
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from citypass.errors import CityPassError, Unavailable

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Playwright

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required")
#: A phone: the wallet is laid out for this viewport, at this pixel density.
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
#: A lane's screen: a 1080p display on a pole.
LANE_DISPLAY = {"viewport": {"width": 1920, "height": 1080}, "device_scale_factor": 1}


class BrowserMissing(Unavailable):
    """No Chromium (or no Playwright) on this machine."""


def chromium_path() -> str | None:
    """The Chromium to drive, or None: ``/usr/bin/chromium`` if present, else one on PATH."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


def why_missing() -> str | None:
    """Why no browser can be driven here (None when one can)."""
    if chromium_path() is None:
        return "Chromium is not installed (Debian: apt-get install chromium; scripts/bootstrap.sh does it)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    return None


class Browser:
    """Headless Chromium (Playwright gives each launch a new, empty profile); :meth:`context` opens a device — a
    phone or a lane display — with its own storage and service workers."""

    def __init__(self, lang: str = "zh-CN") -> None:
        self.lang = lang
        self._pw: Playwright | None = None
        self._contexts: list[BrowserContext] = []
        self._browser: Any = None

    def __enter__(self) -> Browser:
        problem = why_missing()
        if problem is not None:
            raise BrowserMissing(problem)
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=chromium_path(), headless=True, args=list(FLAGS))
        return self

    def context(self, kind: dict[str, Any], **options: Any) -> BrowserContext:
        """A new context (its own cookies, storage and service workers: another device)."""
        context: BrowserContext = self._browser.new_context(locale=self.lang, **kind, **options)
        self._contexts.append(context)
        return context

    def page(self, kind: dict[str, Any], **options: Any) -> Page:
        return self.context(kind, **options).new_page()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for context in self._contexts:
            try:
                context.close()
            except Exception:
                pass
        if self._browser is not None:
            self._browser.close()
        if self._pw is not None:
            self._pw.stop()


class BrowserThread:
    """A :class:`Browser` on its own thread: ``call(fn)`` runs ``fn(browser)`` there and returns its result."""

    def __init__(self, lang: str = "zh-CN") -> None:
        self.lang = lang
        self._jobs: queue.SimpleQueue[tuple[Callable[[Browser], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="browser", daemon=True)
        self._started: Future[None] = Future()

    def _run(self) -> None:
        try:
            with Browser(self.lang) as browser:
                self._started.set_result(None)
                while (job := self._jobs.get()) is not None:
                    fn, done = job
                    try:
                        done.set_result(fn(browser))
                    except BaseException as exc:  # handed to the caller
                        done.set_exception(exc)
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)

    def start(self, timeout: float = 60) -> BrowserThread:
        self._thread.start()
        self._started.result(timeout)
        return self

    def call(self, fn: Callable[[Browser], T], timeout: float = 60) -> T:
        if not self._thread.is_alive():
            raise CityPassError("the browser thread is not running")
        done: Future[T] = Future()
        self._jobs.put((fn, done))
        return done.result(timeout)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(30)
