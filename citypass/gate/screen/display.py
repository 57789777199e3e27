"""The daemon's side of the screen: :class:`LaneScreen` turns outcomes and status into screen states.

The daemon calls :meth:`LaneScreen.show_outcome` on its decision thread right after the relay moved (before it
logs or counts anything), and :meth:`LaneScreen.show_status` each time it refreshes its status (every loop
iteration). Both return in microseconds: a decision becomes a state dict and goes to the hub; the lane's
condition is worked out from the status and published only when it changes.

The lane's condition, in order of precedence:

* **fire** — the barrier reports the fire alarm (the barrier is free);
* **out of order** — the camera is not delivering (``camera``); the ledger is older than the site's staleness
  limit where the policy denies on a stale ledger (``ledger_stale``); the barrier is parked out of service;
* **idle** — otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from citypass.credential.claims import Benefit
from citypass.credential.sites import SiteSettings
from citypass.gate.daemon import Outcome
from citypass.gate.policy import GatePolicy
from citypass.gate.screen.http import ScreenEndpoint
from citypass.gate.screen.hub import ScreenHub
from citypass.gate.screen.texts import LaneKind, ScreenTexts


class LaneScreen:
    """What the daemon shows visitors (:class:`citypass.gate.daemon.LaneDisplay`), published through ``hub``."""

    def __init__(self, hub: ScreenHub, texts: ScreenTexts, site: SiteSettings, policy: GatePolicy, *,
                 wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic) -> None:
        self.hub, self.texts, self.site, self.policy = hub, texts, site, policy
        self.wall, self.mono = wall, mono
        self._lane: tuple[LaneKind, str | None] | None = None

    def endpoint(self) -> ScreenEndpoint:
        """The HTTP side, for the health server."""
        return ScreenEndpoint(self.hub)

    def show_outcome(self, outcome: Outcome) -> None:
        stages = outcome.stages
        acted = stages.get("relay", stages.get("committed", self.mono()))
        at = self.wall() - (self.mono() - acted)  # the relay's moment on the wall clock the page compares with
        d = outcome.decision
        if d.allowed:
            terms = d.credential.terms if d.credential is not None else None
            benefit = (d.benefit_left, terms.period.name.lower()) if isinstance(terms, Benefit) and \
                d.benefit_left is not None else None
            self.hub.decision(self.texts.allow(d.persons, d.flags, at, benefit=benefit))
        else:
            assert d.reason is not None
            self.hub.decision(self.texts.deny(d.reason, at))

    def show_status(self, status: dict[str, Any]) -> None:
        lane = self.condition(status)
        if lane != self._lane:
            self._lane = lane
            self.hub.lane(self.texts.lane(*lane))

    def condition(self, status: dict[str, Any]) -> tuple[LaneKind, str | None]:
        """(kind, cause) of the lane from the daemon's status."""
        barrier = status.get("barrier")
        if barrier == "fire_alarm":
            return "fire", None
        if status.get("state") == "out_of_order":
            return "out_of_order", "camera"
        age = (status.get("ledger") or {}).get("age_s")
        if self.policy.stale_ledger == "deny" and (age is None or age > self.site.staleness_hours * 3600):
            return "out_of_order", "ledger_stale"
        if barrier in ("out_of_service", "out_of_order"):
            return "out_of_order", "out_of_order"
        return "idle", None

    def close(self) -> None:
        self.hub.close()
