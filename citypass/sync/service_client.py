"""The base of the issuer's MQTT clients (:mod:`citypass.sync.issuer_sync`, :mod:`citypass.sync.ingest_queue`): a paho
client with its own service identity, a ``connected`` event set once the broker confirmed its subscriptions, and
messages handed to :meth:`ServiceClient.handle` without ever killing paho's network thread; and
:class:`Complaints`, which keeps a misbehaving gate from filling the log.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from citypass.sync.endpoint import Endpoint, granted, stop

log = logging.getLogger("citypass.sync.issuer_sync")  # one logger for the issuer's sync side, as before


class ServiceClient:
    """A paho client with a connected event; subclasses subscribe in :meth:`subscriptions`."""

    def __init__(self, endpoint: Endpoint, client_id: str, clock: Callable[[], float], *,
                 clean_start: bool = True) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.clock = clock
        self.clean_start = clean_start
        self.connected = threading.Event()
        self._started = False
        self._stopping_client = False
        self.client = endpoint.client(client_id, clean_start=clean_start)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: self.connected.clear()
        self.client.on_message = self._on_message
        # Ready once the broker confirmed the subscriptions, not at CONNACK: nothing is missed after start().
        self.client.on_subscribe = self._on_subscribe

    def subscriptions(self) -> list[tuple[str, int]]:
        raise NotImplementedError

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.warning("%s refused: %s", self.client_id, rc)
            return
        if not self.subscriptions():  # a client that only publishes is ready at CONNACK
            self.connected.set()
            return
        client.subscribe(self.subscriptions())

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any) -> None:
        if granted(client, self.subscriptions(), codes):
            self.connected.set()
        else:  # e.g. a clustered engine whose consumer leader is being re-elected: subscribed again shortly
            log.warning("%s: subscription refused (%s), trying again", self.client_id, ", ".join(map(str, codes)))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._stopping_client:
            return  # stopping: whatever arrives now is not acked by us, and its gate sends it again
        try:
            self.handle(message.topic, bytes(message.payload))
        except Exception:  # a bad message must never kill the network thread
            log.exception("%s: message on %s failed", self.client_id, message.topic)

    def handle(self, topic: str, payload: bytes) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._started:  # a second loop thread on one client would interleave packets on the socket
            raise RuntimeError(f"{self.client_id} is already started")
        self._started = True
        # A persistent session lives a day past a disconnect (MQTT 5); 3.1.1 keeps it until a clean connect.
        self.endpoint.start(self.client, clean_start=self.clean_start, session_expiry=0 if self.clean_start else 86_400)

    def stop(self) -> None:
        self._stopping_client = True
        stop(self.client)


class Complaints:
    """One warning per device per ``interval_s`` about its messages the issuer could not take, with a count:
    a broken (or hostile) gate sending garbage in a loop must not write a traceback per message."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.clock = interval_s, clock
        self._last: dict[str, tuple[float, int]] = {}  # device → (when last logged, suppressed since)
        self.total = 0

    def note(self, device: str, what: str) -> None:
        self.total += 1
        now = self.clock()
        last, suppressed = self._last.get(device, (-math.inf, 0))
        if now - last < self.interval_s:
            self._last[device] = (last, suppressed + 1)
            return
        self._last[device] = (now, 0)
        more = f" (and {suppressed} more since the last warning)" if suppressed else ""
        log.warning("message from %s not taken: %s%s", device, what[:300], more)
