"""From the decision loop to every connected screen, without the loop ever waiting.

The decision loop calls :meth:`ScreenHub.decision` right after the relay moves and :meth:`ScreenHub.lane` when the
lane's condition changes. Each call takes a lock for the time it takes to append to a short list and wake the
readers — no encoding, no I/O, no waiting for a slow or vanished screen. Each connected screen has its own
thread in the health server (:mod:`citypass.gate.screen.http`) that waits on the hub, encodes what is new as
server-sent events and writes it to its socket; a screen that falls far behind skips to the newest states (it
only ever needs the present).

    >>> hub = ScreenHub(ping_s=0.05)
    >>> stream = hub.stream()
    >>> next(stream)[:11]                     # the reconnect delay, then the lane's state as it is now
    b'retry: 1000'
    >>> hub.decision({"kind": "allow"})
    >>> next(stream).splitlines()[:2]
    [b'event: decision', b'data: {"kind":"allow","seq":1}']
    >>> next(stream).splitlines()[0]          # nothing new for ping_s: a ping keeps the connection honest
    b'event: ping'
    >>> hub.close(); list(stream)
    []
"""

from __future__ import annotations

import functools
import json
import threading
from collections import deque
from collections.abc import Generator
from typing import Any

#: States kept for screens that are momentarily behind; older ones are skipped.
BACKLOG = 16
RETRY_MS = 1000


def _frame(event: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


class ScreenHub:
    def __init__(self, ping_s: float = 5.0) -> None:
        self.ping_s = ping_s
        self._cond = threading.Condition()
        self._events: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=BACKLOG)
        self._seq = 0
        self._lane: dict[str, Any] | None = None
        self._closed = False
        self.clients = 0

    # -- the decision loop's side (never blocks for long) ------------------------------------------
    def decision(self, state: dict[str, Any]) -> None:
        """Show a decision now."""
        self._publish("decision", state)

    def lane(self, state: dict[str, Any]) -> None:
        """The lane's standing condition (idle, out of order, fire); sent to every screen that connects."""
        self._publish("lane", state)

    def _publish(self, event: str, state: dict[str, Any]) -> None:
        with self._cond:
            self._seq += 1
            state["seq"] = self._seq
            if event == "lane":
                self._lane = state
            self._events.append((self._seq, event, state))
            self._cond.notify_all()

    # -- a screen's side (its own thread) -------------------------------------------------------------
    def stream(self) -> Generator[bytes, None, None]:
        """Server-sent events for one screen: the current lane state, then every new state, a ping when
        nothing happened for ``ping_s``; ends when the hub closes."""
        with self._cond:
            self.clients += 1
            seen = self._seq
            lane = self._lane
        try:
            yield f"retry: {RETRY_MS}\n\n".encode() + (_frame("lane", lane) if lane is not None else b"")
            while True:
                with self._cond:
                    self._cond.wait_for(functools.partial(self._news_after, seen), timeout=self.ping_s)
                    if self._closed:
                        return
                    fresh = [(s, e, d) for s, e, d in self._events if s > seen]
                    seen = self._seq
                if not fresh:
                    yield _frame("ping", {"seq": seen})
                    continue
                yield b"".join(_frame(event, data) for _, event, data in fresh)
        finally:
            with self._cond:
                self.clients -= 1

    def _news_after(self, seen: int) -> bool:
        return self._closed or self._seq > seen

    def close(self) -> None:
        """End every stream (the daemon is stopping; the screens will reconnect to the next one)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
