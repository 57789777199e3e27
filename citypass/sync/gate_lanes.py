"""The gate's side of sibling lanes: share this lane's admissions with the other lanes of its site, apply theirs.

:class:`LaneExchange` rides on the gate's sync thread (:class:`citypass.sync.gate_sync.GateSync` calls it each
cycle) and on its MQTT connection: the lanes of a site are connected to the same broker — their site broker,
bridged to the central one (:mod:`citypass.sync.sitebroker`), or the central broker itself — and every lane
reads ``site/N/#`` already.

* **Share.** Each cycle it reads this lane's new allowed taps and annulments from the ledger
  (:meth:`citypass.gate.ledger.siblings.SiteLedger.own_events`), signs them with the device key
  (:class:`citypass.sync.lanes.LaneSigner`) and publishes them on ``site/N/lanes/<device>`` (QoS 1). How far the
  broker has acknowledged is written to the ledger, so a lane killed mid-way shares the rest after a restart
  (a sibling ignores what it already has). :meth:`GateSync.poke` wakes the thread as soon as the decision loop
  committed a tap: sharing starts within milliseconds of the commit, not at the next poll.
* **Apply.** paho's network thread hands it each sibling message (:meth:`offer`); a message is dropped and
  counted at once when its sender is over its rate (a token bucket per sender: ``rate_per_s``, ``burst``) or
  the queue is full, so a flooding sibling costs the network thread a dictionary lookup per message and
  cannot crowd out the others. On the sync thread, at most ``apply_per_cycle`` messages are verified
  (:class:`citypass.sync.lanes.LaneVerifier`: certificate from the device CA, signature, the topic's device
  and site) and applied, one short transaction per sender; the decision loop's own transactions go between.
  A refused message (forged, foreign, malformed) is counted by reason and logged.
* **Races.** A sibling's tap that makes a single-use ticket over-used, or an annual pass re-admitted inside
  a hard anti-passback window, is counted (``lane_races``) and logged as ``sync_lane_race`` with both tap
  ids and how far apart the two decisions were; the issuer receives both taps and reports the incident.
* **The central link.** A site broker says on ``site/N/central`` (retained) whether its bridge to the central
  broker is up; :attr:`central` is that (None without a site broker), shown in the gate's health.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from citypass.gate.ledger import GateLedger
from citypass.gate.ledger.siblings import MAX_APPLY, LaneEvent, SiteLedger
from citypass.sync import topics
from citypass.sync.endpoint import ClientFiles
from citypass.sync.lanes import LaneBatch, LaneRefused, LaneSigner, LaneTap, LaneVerifier

PRUNE_EVERY_S = 600.0
PAGES_PER_CYCLE = 20  # outbox pages (of ``batch`` rows) a cycle looks at, at most
COUNTERS = ("lane_sent", "lane_applied", "lane_annulled", "lane_duplicates", "lane_refused", "lane_dropped",
            "lane_races")


@dataclass(frozen=True)
class LaneSettings:
    """How much a lane shares at once and how much of its siblings' traffic it takes."""

    batch: int = 50              # own events per message
    window: int = 4              # messages awaiting the broker's acknowledgement at once
    rate_per_s: float = 20.0     # sibling messages per second per sender (a lane makes a tap every ~2 s)
    burst: int = 100             # … with this much credit (a lane back from isolation sends its backlog)
    queue: int = 1000            # sibling messages waiting to be applied, all senders together
    apply_per_cycle: int = 100   # sibling messages verified and applied per sync cycle at most
    persist_every_s: float = 0.5  # how often the shared cursor is written to the ledger


class LaneExchange:
    """Sibling sharing for ``device`` at ``site``. ``report(name, level, **fields)`` logs an event."""

    def __init__(self, device: str, site: int, signer: LaneSigner, verifier: LaneVerifier, *,
                 settings: LaneSettings | None = None, report: Callable[..., None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.device, self.site = device, site
        self.signer, self.verifier = signer, verifier
        self.settings = settings or LaneSettings()
        self.report = report or (lambda *a, **k: None)
        self.clock = clock
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.central: bool | None = None
        self._pending: deque[tuple[str, bytes]] = deque()
        self._lock = threading.Lock()
        self._buckets: dict[str, list[float]] = {}
        self._acked: deque[int] = deque()
        self._chain: deque[list[Any]] = deque()  # [mid or None, outbox seq up to, acknowledged] in send order
        self._ledger: GateLedger | None = None
        self._site_ledger: SiteLedger | None = None
        self._sent_upto = 0
        self._confirmed = 0
        self._persisted = 0
        self._persisted_at = 0.0
        self._quiet_until: dict[str, float] = {}
        self._prune_due = 0.0

    @classmethod
    def from_files(cls, device: str, site: int, files: ClientFiles, **kw: Any) -> LaneExchange:
        """Sign with the device's TLS key and certificate; verify siblings against the device CA."""
        return cls(device, site, LaneSigner.from_files(files.key, files.cert), LaneVerifier.from_file(files.ca), **kw)

    # -- paho's network thread -------------------------------------------------------------------------
    def wants(self, topic: str) -> bool:
        return topic == topics.site_central(self.site) or topic.startswith(topics.site_subtree(self.site)[:-1]
                                                                           + topics.LANES + "/")

    def offer(self, topic: str, payload: bytes) -> None:
        """A message on this site's lanes (or central-link) topic; cheap, never blocks."""
        if topic == topics.site_central(self.site):
            self.central = payload == b"1"
            return
        parsed = topics.parse_lane_topic(topic)
        if parsed is None or parsed[1] == self.device:
            return  # our own message, back from the broker
        sender = parsed[1]
        now = time.monotonic()
        bucket = self._buckets.setdefault(sender, [float(self.settings.burst), now])
        bucket[0] = min(float(self.settings.burst), bucket[0] + (now - bucket[1]) * self.settings.rate_per_s)
        bucket[1] = now
        with self._lock:
            if bucket[0] < 1 or len(self._pending) >= self.settings.queue:
                self.counters["lane_dropped"] += 1
                return
            bucket[0] -= 1
            self._pending.append((sender, payload))

    def published(self, mid: int) -> None:
        """The broker acknowledged message ``mid`` (paho's ``on_publish``)."""
        self._acked.append(mid)

    # -- the sync thread ------------------------------------------------------------------------------
    def connected(self, ledger: GateLedger) -> None:
        """A (re)connection: whatever the broker had not acknowledged is shared again."""
        site = self._attach(ledger)
        self._chain.clear()
        self._sent_upto = max(site.shared_seq(), self._confirmed)

    def cycle(self, client: mqtt.Client, ledger: GateLedger, connected: bool) -> None:
        site = self._attach(ledger)
        self._apply(site)
        self._confirm(site)
        if connected:
            self._share(client, site)
        now = time.monotonic()
        if now >= self._prune_due:  # siblings' taps are kept as long as the lane keeps its own
            self._prune_due = now + PRUNE_EVERY_S
            site.prune(int(self.clock()) - ledger.config.outbox_retention_days * 86_400)

    def _attach(self, ledger: GateLedger) -> SiteLedger:
        if self._site_ledger is None or self._ledger is not ledger:
            self._ledger, self._site_ledger = ledger, SiteLedger(ledger)
            self._sent_upto = self._confirmed = self._persisted = self._site_ledger.shared_seq()
        return self._site_ledger

    def _share(self, client: mqtt.Client, site: SiteLedger) -> None:
        for _ in range(PAGES_PER_CYCLE):  # bounded work per cycle, however long the outbox
            if len([c for c in self._chain if not c[2]]) >= self.settings.window:
                return
            events, upto = site.own_events(self._sent_upto, self.settings.batch)
            if upto == self._sent_upto:
                return
            if not events:  # only denials, passages, stage times: nothing to tell
                if self._chain:
                    self._chain.append([None, upto, True])
                else:
                    self._confirmed = max(self._confirmed, upto)
                self._sent_upto = upto
                continue
            batch = LaneBatch(self.device, self.site, int(self.clock() * 1000), tuple(_to_wire(e) for e in events))
            info = client.publish(topics.site_lanes(self.site, self.device), self.signer.sign(batch), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # not connected after all: shared again after the reconnect
            self._chain.append([info.mid, upto, False])
            self._sent_upto = upto
            self.counters["lane_sent"] += len(events)

    def _confirm(self, site: SiteLedger) -> None:
        acked = set()
        while self._acked:
            acked.add(self._acked.popleft())
        for link in self._chain:
            if link[0] in acked:
                link[2] = True
        while self._chain and self._chain[0][2]:
            self._confirmed = max(self._confirmed, self._chain.popleft()[1])
        now = time.monotonic()
        if self._confirmed > self._persisted and now - self._persisted_at >= self.settings.persist_every_s:
            site.set_shared(self._confirmed)
            self._persisted, self._persisted_at = self._confirmed, now

    def _apply(self, site: SiteLedger) -> None:
        with self._lock:
            take = min(len(self._pending), self.settings.apply_per_cycle)
            messages = [self._pending.popleft() for _ in range(take)]
        if not messages:
            return
        now = self.clock()
        by_sender: dict[str, list[LaneEvent]] = {}
        for sender, payload in messages:
            try:
                batch = self.verifier.verify(payload, device=sender, site=self.site, now=now)
            except LaneRefused as exc:
                self.counters["lane_refused"] += 1
                self._log("lane_refused", "warning", sender=sender, reason=exc.reason, error=str(exc))
                continue
            by_sender.setdefault(sender, []).extend(_from_wire(e) for e in batch.events)
        passback_s = self._passback_s(site)
        for sender, events in by_sender.items():
            for start in range(0, len(events), MAX_APPLY):
                applied = site.apply(sender, self.site, events[start:start + MAX_APPLY], int(now * 1000),
                                     passback_s=passback_s)
                self.counters["lane_applied"] += applied.taps
                self.counters["lane_annulled"] += applied.annulled
                self.counters["lane_duplicates"] += applied.duplicates
                for race in applied.races:
                    self.counters["lane_races"] += 1
                    self.report("lane_race", "warning", kind=race.kind, credential=race.credential_id.hex(),
                                own_tap=race.own_tap_id, sibling=race.gate_id, sibling_tap=race.sibling_tap_id,
                                apart_s=race.apart_s)

    def _passback_s(self, site: SiteLedger) -> int | None:
        settings = site.ledger.site(self.site)
        return settings.passback_minutes * 60 if settings is not None and settings.passback_hard else None

    def _log(self, name: str, level: str, **fields: Any) -> None:
        """At most one line per second per event name: a flood is counted, not written out line by line."""
        now = time.monotonic()
        if now >= self._quiet_until.get(name, 0.0):
            self._quiet_until[name] = now + 1.0
            self.report(name, level, **fields)


def _to_wire(e: LaneEvent) -> LaneTap:
    return LaneTap(e.event, e.tap_id, e.credential_id, e.kind, e.persons, e.at, e.committed_ms, e.party, e.product,
                   e.presentation_id)


def _from_wire(t: LaneTap) -> LaneEvent:
    return LaneEvent(0, t.what, t.tap_id, t.credential_id, t.kind, t.persons, t.at, t.committed_ms, t.party,
                     t.product, t.presentation_id)
