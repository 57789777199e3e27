"""The gate's side of sync: taps up exactly once, signed ledger deltas down, presence and clock.

:class:`GateSync` runs in its own thread with its **own** :class:`~citypass.gate.ledger.GateLedger` connection
to the gate's ledger file, so the decision loop never waits for it (SQLite's WAL lets both work at
once). paho-mqtt's network thread only puts what arrives on a queue; everything else — reading the
outbox, marking acks, verifying and applying deltas, HTTP catch-up — happens on the sync thread::

    sync = GateSync(Endpoint("broker", 8883, tls=files),
                    GateSyncConfig(device_id="gate-wl-e1", ledger_path=Path("ledger.sqlite3"), root=root, site=7),
                    fetcher=HttpLedgerSource("https://issuer.city.example", device_token))
    sync.start()          # returns at once; connects, reconnects, uploads, applies in the background
    ...
    sync.stop()           # publishes "offline" (retained) and disconnects

Guarantees (the argument is in docs/mqtt.md):

* **Up.** The outbox is the source of truth. Rows go out in batches of ``batch_size`` (QoS 1), at most
  ``window`` batches unacknowledged at once; a row is marked uploaded only when an ack from the issuer
  lists its event id. After a reconnect, or when the oldest batch waits longer than ``ack_timeout_s``,
  everything unacknowledged is sent again; the issuer dedupes by id and acks duplicates again.
* **Down.** A delta is verified against the ledger's trust list before anything else; a forged one is
  counted (``forged``) and logged. One not newer than the ledger is ignored (``replayed``). One that
  does not start at the ledger's sequence is a gap (``gaps``): the gate catches up over HTTP (deltas,
  else a snapshot) or, without an HTTP source, asks on its ``requests`` topic.
* **Clock.** Issuer-signed ticks feed :class:`~citypass.sync.clock.OffsetEstimator`; ``clock_alarm`` is raised
  past ``clock_alarm_s`` and published in the status; each raises the ledger's clock floor (less that
  tolerance). A tick also carries the issuer's ledger sequence, so a gate that missed a delta notices within
  two ticks even when no later delta comes. (Deltas and ticks are handled by
  :class:`~citypass.sync.gate_updates.LedgerFollower`.)
* **Sibling lanes.** With ``lanes`` (the default when the endpoint has TLS files and the gate a site), the
  lane shares its admissions with the other lanes of its site and applies theirs
  (:class:`~citypass.sync.gate_lanes.LaneExchange`); :meth:`GateSync.poke` after each commit makes that
  immediate. Behind a site broker, ``state.central`` says whether the site's bridge to the central broker is
  up; while it is down, unacknowledged batches are not resent (the bridge holds them).
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from citypass.credential.keys import VerifyKey
from citypass.gate.ledger import GateLedger
from citypass.gate.ledger.config import LedgerConfig
from citypass.gate.ledger.connection import LedgerError
from citypass.sync import codec, topics
from citypass.sync.clock import OffsetEstimator
from citypass.sync.endpoint import WEEK_S, Endpoint, HttpLedgerSource, granted, stop
from citypass.sync.gate_lanes import LaneExchange, LaneSettings
from citypass.sync.gate_updates import LedgerFollower

log = logging.getLogger(__name__)
SOFTWARE = "citypass-0.1.0"


#: Log levels of the events sync reports (the names the gate's JSON log uses).
LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True)
class GateSyncConfig:
    device_id: str
    ledger_path: Path
    root: VerifyKey | None = None
    site: int | None = None
    batch_size: int = 500
    window: int = 8
    ack_timeout_s: float = 30.0
    status_interval_s: float = 30.0
    session_expiry_s: int = WEEK_S
    clock_alarm_s: float = 10.0
    catch_up_interval_s: float = 5.0
    software: str = SOFTWARE
    busy_timeout_ms: int = 2000
    #: share admissions with the other lanes of the site (needs the endpoint's TLS files: the device key signs)
    lanes: bool = True
    lane_settings: LaneSettings = field(default_factory=LaneSettings)


@dataclass(frozen=True)
class SyncState:
    """What the sync thread last knew (for health reports and tests)."""

    connected: bool = False
    ledger_seq: int | None = None
    backlog: int | None = None
    clock_offset: float | None = None
    clock_alarm: bool = False
    issuer_seq: int | None = None
    counters: dict[str, int] = field(default_factory=dict)
    central: bool | None = None  # a site broker's link to the central broker (None: no site broker)
    last_ack_at: float | None = None  # wall clock of the issuer's last acknowledgement of an upload


class GateSync:
    """The sync thread for one gate. ``fps`` reports the camera's frame rate for the status, if given."""

    def __init__(self, endpoint: Endpoint, config: GateSyncConfig, *, fetcher: HttpLedgerSource | None = None,
                 fps: Callable[[], float | None] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.endpoint = endpoint
        self.config = config
        self.fetcher = fetcher
        self.fps = fps
        self.clock = clock
        self.counters: dict[str, int] = {k: 0 for k in ("batches", "acked", "resends", "deltas", "forged",
                                                          "replayed", "gaps", "snapshots", "bad_messages")}
        self.estimator = OffsetEstimator(alarm_s=config.clock_alarm_s)
        tls, site = endpoint.tls, config.site
        self.lanes = (LaneExchange.from_files(config.device_id, site, tls, settings=config.lane_settings,
                                              report=self._event, clock=clock)
                      if config.lanes and site is not None and tls is not None else None)
        self._central: bool | None = None
        self._last_ack_at: float | None = None
        self._inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._state = SyncState()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.ready = threading.Event()
        # sync-thread state
        self._connected = False
        self._cursor = 0
        self._in_flight: dict[int, tuple[int, float]] = {}  # batch id → (rows, sent at, monotonic)
        self._next_batch = int.from_bytes(os.urandom(4), "big")  # a restart never reuses a live batch id
        self.follower = LedgerFollower(config, fetcher, self.counters, self._event, self.estimator)
        self._status_due = 0.0
        self._session_present = False
        self._subscriptions: list[tuple[str, int]] = []
        self._acked_ids: list[str] = []

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> GateSync:
        if self._thread is not None:
            raise RuntimeError("this GateSync is already started")
        self._thread = threading.Thread(target=self._run, name=f"sync-{self.config.device_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._inbox.put(("wake",))
        if self._thread is not None:
            self._thread.join(timeout)

    def poke(self) -> None:
        """Wake the sync thread now (the daemon calls it after each commit: siblings hear of a tap at once)."""
        self._inbox.put(("wake",))

    @property
    def state(self) -> SyncState:
        with self._lock:
            return self._state

    def _event(self, name: str, level: str = "info", **fields: Any) -> None:
        """Report through the standard ``logging`` module, once. In the gate daemon every ``citypass.*`` logger
        goes into the one JSON event log (:func:`citypass.gate.logs.library_logs`), where ``event`` and
        ``fields`` become the line's event name and fields: ``{"event": "sync_disconnected", "reason": …}``."""
        log.log(LEVELS[level], "%s %s", name, fields, extra={"event": f"sync_{name}", "fields": fields})

    # -- the sync thread --------------------------------------------------------------------------
    def _run(self) -> None:
        cfg = self.config
        # Its own connection, with a patient busy timeout: the sync thread may wait for the decision loop's
        # commits, never the other way round (the loop's own connection keeps its 50 ms limit, and sync's
        # writes are short: see citypass.gate.ledger.outbox.mark_uploaded).
        ledger = GateLedger.open(cfg.ledger_path, root=cfg.root,
                                 config=LedgerConfig(busy_timeout_ms=cfg.busy_timeout_ms))
        will = codec.encode_status(codec.Status(online=False, at=int(self.clock()), software=cfg.software))
        client = self.endpoint.client(cfg.device_id, will=(topics.gate_status(cfg.device_id), will))
        client.on_connect = self._on_connect
        client.on_disconnect = lambda c, u, f, rc, p: self._inbox.put(("disconnected", str(rc)))
        client.on_message = self._on_message
        if self.lanes is not None:
            client.on_publish = lambda c, u, mid, rc, p: self.lanes.published(mid) if self.lanes else None
        client.on_subscribe = self._on_subscribe
        self.endpoint.start(client, clean_start=False, session_expiry=cfg.session_expiry_s)
        self.ready.set()
        try:
            while not self._stopping.is_set():
                try:
                    self._cycle(client, ledger)
                except (LedgerError, sqlite3.Error) as exc:  # e.g. a full disk: report, back off, go on
                    self._event("error", "error", error=str(exc))
                    self._stopping.wait(1.0)
            if self._connected:
                offline = replace(self._status(ledger), online=False)
                info = client.publish(topics.gate_status(cfg.device_id), codec.encode_status(offline), 1, True)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    info.wait_for_publish(2.0)
        finally:
            stop(client)
            ledger.close()
            if self.fetcher is not None:
                self.fetcher.close()

    def _on_message(self, client: mqtt.Client, userdata: Any, m: mqtt.MQTTMessage) -> None:
        if self.lanes is not None and self.lanes.wants(m.topic):
            self.lanes.offer(m.topic, bytes(m.payload))  # rate-limited and queued there: never the inbox
            self._inbox.put(("wake",))
        else:
            self._inbox.put(("message", m.topic, bytes(m.payload), self.clock()))

    def _cycle(self, client: mqtt.Client, ledger: GateLedger) -> None:
        busy = self._connected and len(self._in_flight) < self.config.window
        try:
            item = self._inbox.get(timeout=0.02 if busy else 0.1 if self.lanes else 0.2)
            self._handle(client, ledger, item)
            for _ in range(1000):  # drain whatever else arrived (acks come in bursts), but keep uploading
                self._handle(client, ledger, self._inbox.get_nowait())
        except queue.Empty:
            pass
        self._flush_acks(ledger)
        if self.lanes is not None:
            self.lanes.cycle(client, ledger, self._connected)
            if self.lanes.central and self._central is False:  # the site's link to the issuer is back
                self._reset_uploads()
            self._central = self.lanes.central
        if self._connected:
            self._upload(client, ledger)
            if time.monotonic() >= self._status_due:
                self._publish_status(client, ledger)
        self._publish_state(ledger)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            self._inbox.put(("refused", str(rc)))
            return
        cfg = self.config
        subs = [topics.gate_acks(cfg.device_id), topics.gate_ledger(cfg.device_id), topics.ALL_LEDGER,
                topics.ISSUER_TIME]
        if cfg.site is not None:
            subs.append(topics.site_subtree(cfg.site))
        self._session_present = bool(flags.session_present)
        # Uploads start at the SUBACK: by then the acks topic is subscribed even on a brand-new session.
        self._subscriptions = [(t, 0 if t == topics.ISSUER_TIME else 1) for t in subs]
        client.subscribe(self._subscriptions)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any) -> None:
        if granted(client, self._subscriptions, codes):
            self._inbox.put(("connected", self._session_present))
        else:  # not connected for uploads until the acks topic is ours: subscribed again in a second
            self._event("subscribe_refused", "warning", codes=[str(c) for c in codes])

    def _handle(self, client: mqtt.Client, ledger: GateLedger, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "connected":
            self._connected = True
            self._reset_uploads()  # everything unacknowledged goes again: paho's queue is memory only
            self._status_due = 0.0
            self._event("connected", session_present=item[1])
            if self.lanes is not None:
                self.lanes.connected(ledger)
            self.follower.catch_up(client, ledger, force=True)
        elif kind in ("disconnected", "refused"):
            if self._connected or kind == "refused":
                self._event(kind, "warning", reason=item[1])
            self._connected = False
        elif kind == "message":
            _, topic, payload, received = item
            try:
                self._message(client, ledger, topic, payload, received)
            except (codec.CodecError, LedgerError, sqlite3.Error) as exc:
                self.counters["bad_messages"] += 1
                self._event("bad_message", "warning", topic=topic, error=str(exc))

    def _message(self, client: mqtt.Client, ledger: GateLedger, topic: str, payload: bytes,
                 received: float) -> None:
        cfg = self.config
        if topic == topics.gate_acks(cfg.device_id):
            ack = codec.decode_ack(payload)
            self._acked_ids.extend(ack.event_ids)  # marked once the inbox is drained (_flush_acks)
            self._in_flight.pop(ack.batch_id, None)
        elif topic == topics.ISSUER_TIME:
            self.follower.tick(client, ledger, payload, received)
        elif topic == topics.gate_ledger(cfg.device_id) and (seq := codec.decode_snapshot_notice(payload)) is not None:
            self._event("snapshot_needed", "warning", issuer_seq=seq, ledger_seq=ledger.seq)
            self.follower.fetch_snapshot(ledger)
        elif topic.endswith("/ledger"):
            self.follower.delta(client, ledger, payload)

    # -- upload -----------------------------------------------------------------------------------
    def _flush_acks(self, ledger: GateLedger) -> None:
        # One write transaction for every ack that arrived together: back-to-back short transactions
        # would starve the decision loop's writer, whose busy handler sleeps and retries (50 ms budget).
        if self._acked_ids:
            ids, self._acked_ids = self._acked_ids, []
            try:
                self.counters["acked"] += ledger.mark_uploaded(ids, int(self.clock()))
                self._last_ack_at = self.clock()
            except LedgerError as exc:  # not marked: the rows are sent again and acked as duplicates
                self._event("mark_failed", "warning", error=str(exc), events=len(ids))

    def _reset_uploads(self) -> None:
        self._cursor = 0
        self._in_flight.clear()

    def _upload(self, client: mqtt.Client, ledger: GateLedger) -> None:
        cfg = self.config
        now = time.monotonic()
        waited = now - min((sent for _, sent in self._in_flight.values()), default=now)
        # while a site broker's bridge is down it queues what it has: a resend would only be sent twice later
        if waited > cfg.ack_timeout_s and self._central is not False:
            self.counters["resends"] += 1
            self._event("ack_timeout", "warning", in_flight=len(self._in_flight))
            self._reset_uploads()
        while len(self._in_flight) < cfg.window:
            rows = ledger.pending(cfg.batch_size, after=self._cursor)
            if not rows:
                return
            batch_id, self._next_batch = self._next_batch, (self._next_batch + 1) % 2**32
            events = [codec.Event(r.event_id, r.tap_id, r.kind, r.body, r.created_at) for r in rows]
            info = client.publish(topics.gate_taps(cfg.device_id), codec.encode_taps(batch_id, events), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # not connected after all: the reconnect resends from the outbox
            self._in_flight[batch_id] = (len(rows), now)
            self._cursor = rows[-1].seq
            self.counters["batches"] += 1

    # -- status -----------------------------------------------------------------------------------
    def _status(self, ledger: GateLedger) -> codec.Status:
        fps = self.fps() if self.fps is not None else None
        offset = self.estimator.offset
        return codec.Status(online=True, at=int(self.clock()), seq=ledger.seq, backlog=ledger.backlog(), fps=fps,
                            clock_offset=None if offset is None else round(offset, 3),
                            clock_alarm=self.estimator.alarm, software=self.config.software,
                            counters=self._counters())

    def _publish_status(self, client: mqtt.Client, ledger: GateLedger) -> None:
        status = self._status(ledger)
        client.publish(topics.gate_status(self.config.device_id), codec.encode_status(status), qos=1, retain=True)
        self._status_due = time.monotonic() + self.config.status_interval_s
        with self._lock:
            self._state = replace(self._state, backlog=status.backlog)

    def _publish_state(self, ledger: GateLedger) -> None:
        with self._lock:
            self._state = SyncState(self._connected, ledger.seq, self._state.backlog, self.estimator.offset,
                                    self.estimator.alarm, self.follower.issuer_seq, self._counters(),
                                    self._central, self._last_ack_at)

    def _counters(self) -> dict[str, int]:
        return dict(self.counters) | (dict(self.lanes.counters) if self.lanes is not None else {})
