"""The barrier on real pins: gpiozero devices wired to :class:`~citypass.gate.barrier.logic.BarrierLogic`.

:class:`Barrier` owns six gpiozero devices (relay, passage sensor, green and red lamps, buzzer, fire
alarm), feeds their callbacks into the pure logic, plays the logic's patterns on the lamps and buzzer,
and runs one small ticker thread that wakes when the next window or alarm is due. Which pins library
drives them is gpiozero's business: pass ``pin_factory`` (tests pass gpiozero's own ``MockFactory``),
or leave it ``None`` for gpiozero's default (lgpio on a Raspberry Pi).

Example, on mock pins::

    >>> from gpiozero.pins.mock import MockFactory
    >>> from citypass.gate.barrier.config import BarrierConfig
    >>> factory = MockFactory()
    >>> barrier = Barrier(BarrierConfig(relay_pin=17, sensor_pin=27), pin_factory=factory)
    >>> factory.pin(17).state          # constructed straight into the (fail-secure) safe state
    False
    >>> barrier.start()
    >>> barrier.grant(1, "tap-1")
    True
    >>> factory.pin(17).state          # relay energised: the barrier is open
    True
    >>> beam = factory.pin(27)         # default wiring: pull-up, low while the beam is broken
    >>> beam.drive_low(); beam.drive_high()
    >>> barrier.events.get_nowait()  # doctest: +ELLIPSIS
    PassageConfirmed(grant_id='tap-1', person_index=0, at=...)
    >>> factory.pin(17).state          # the only person passed: closed again
    False
    >>> barrier.close()

Safety notes
------------
* The relay is constructed with ``initial_value`` set to the safe state, so the pin goes straight from
  input to the safe level: the barrier never twitches at boot. It stays there until :meth:`start`, so a
  daemon can claim its pins early and only take the lane into service once it can decide.
* :meth:`close` drives the safe state before releasing the pins. A released pin (or a killed process,
  or a power cut) is no longer driven by anybody, so the relay board's own pull resistor must encode the
  same safe state; software can only agree with the wiring, not replace it.
* The fire-alarm input is honoured in every state, even before :meth:`start` and while parked in the
  safe state, and :meth:`close` leaves the barrier open if the alarm is active at that moment.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Protocol

from gpiozero import LED, Buzzer, DigitalInputDevice, OutputDevice

from citypass.errors import CityPassError
from citypass.gate.barrier.config import BarrierConfig, PinId
from citypass.gate.barrier.events import BarrierEvent, GrantRejected
from citypass.gate.barrier.logic import BarrierLogic, BarrierStatus
from citypass.gate.barrier.patterns import INDICATIONS, Blink, Pattern, Signal

log = logging.getLogger(__name__)

_IDLE_WAKE_S = 1.0  # the ticker re-checks at least this often, so a missed notify costs at most 1 s
_ENERGISED_KEPT = 256  # relay timestamps remembered, for the benchmark and status pages


class BarrierClosedError(CityPassError, RuntimeError):
    """Raised when a closed :class:`Barrier` is asked to do something."""


class _Switch(Protocol):
    """The part of a gpiozero output device the barrier uses (gpiozero itself is untyped)."""

    def on(self) -> None: ...
    def off(self) -> None: ...
    def close(self) -> None: ...


class _Blinker(_Switch, Protocol):
    def blink(self, on_time: float, off_time: float, n: int | None, background: bool) -> None: ...


class _Contact:
    """A digital input whose meaning ("asserted") is configured apart from its pull resistor.

    gpiozero fixes the active level from the pull (pull-up means active-low); a break-beam receiver or
    a normally-closed fire contact may mean the opposite, so the level is inverted here when needed.
    """

    def __init__(
        self,
        pin: PinId,
        *,
        pull_up: bool | None,
        active_low: bool,
        bounce_s: float | None,
        pin_factory: Any,
        on_change: Callable[[bool], None],
    ) -> None:
        if pull_up is None:
            self._device: Any = DigitalInputDevice(
                pin, pull_up=None, active_state=not active_low, bounce_time=bounce_s, pin_factory=pin_factory
            )
            self._inverted = False
        else:
            self._device = DigitalInputDevice(pin, pull_up=pull_up, bounce_time=bounce_s, pin_factory=pin_factory)
            self._inverted = pull_up != active_low
        self._on_change = on_change
        # Edge-specific callbacks rather than re-reading the pin: on real hardware the callback runs on
        # gpiozero's thread after the edge, and the level may already have changed again.
        self._device.when_activated = self._activated
        self._device.when_deactivated = self._deactivated

    def _activated(self) -> None:
        self._on_change(not self._inverted)

    def _deactivated(self) -> None:
        self._on_change(self._inverted)

    @property
    def asserted(self) -> bool:
        """True while the beam is broken / the fire alarm is active."""
        return bool(self._device.is_active) != self._inverted

    def close(self) -> None:
        self._device.close()


def _drive(device: _Blinker, signal: Signal) -> None:
    if isinstance(signal, Blink):
        device.blink(on_time=signal.on_s, off_time=signal.off_s, n=signal.n, background=True)
    elif signal:
        device.on()
    else:
        device.off()


class Barrier:
    """One lane's barrier on gpiozero devices. Thread-safe; close it (or use ``with``) when done.

    Events go to ``on_event`` if given (called with the barrier's lock held, so keep it short: hand
    the event to your own queue), otherwise into :attr:`events`, which the caller must drain.
    """

    def __init__(
        self,
        config: BarrierConfig | None = None,
        *,
        pin_factory: Any = None,
        on_event: Callable[[BarrierEvent], None] | None = None,
    ) -> None:
        self.config = config if config is not None else BarrierConfig()
        self.events: queue.SimpleQueue[BarrierEvent] = queue.SimpleQueue()
        self._logic = BarrierLogic(self.config)
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._on_event = on_event
        self._pending: deque[BarrierEvent] = deque()
        self._dispatching = False
        self._closed = False
        self._energised_at: OrderedDict[str, float] = OrderedDict()
        self._relay_value = self.config.safe_relay_open
        self._pattern: Pattern | None = None
        self._closeables: list[_Switch | _Contact] = []
        cfg = self.config
        with self._lock:  # callbacks may fire as soon as the inputs exist; they wait for the wiring
            try:
                # The relay first: its pin goes from input straight to the safe level.
                self._relay: _Switch = OutputDevice(
                    cfg.relay_pin,
                    active_high=cfg.relay_active_high,
                    initial_value=cfg.safe_relay_open,
                    pin_factory=pin_factory,
                )
                self._closeables.append(self._relay)
                self._green: _Blinker = LED(cfg.green_led_pin, initial_value=False, pin_factory=pin_factory)
                self._closeables.append(self._green)
                self._red: _Blinker = LED(cfg.red_led_pin, initial_value=False, pin_factory=pin_factory)
                self._closeables.append(self._red)
                self._buzzer: _Blinker = Buzzer(cfg.buzzer_pin, initial_value=False, pin_factory=pin_factory)
                self._closeables.append(self._buzzer)
                self._fire = _Contact(
                    cfg.fire_alarm_pin,
                    pull_up=cfg.fire_alarm_pull_up,
                    active_low=cfg.fire_alarm_active_low,
                    bounce_s=cfg.fire_alarm_bounce_s,
                    pin_factory=pin_factory,
                    on_change=self._on_fire,
                )
                self._closeables.append(self._fire)
                self._sensor = _Contact(
                    cfg.sensor_pin,
                    pull_up=cfg.sensor_pull_up,
                    active_low=cfg.sensor_active_low,
                    bounce_s=cfg.sensor_bounce_s,
                    pin_factory=pin_factory,
                    on_change=self._on_beam,
                )
                self._closeables.append(self._sensor)
            except BaseException:
                self._release()
                raise
            # Levels present before the callbacks existed produced no edge; read them once.
            if self._fire.asserted:
                self._on_fire(True)
            if self._sensor.asserted:  # someone (or the receiver's power-up) we did not see arrive
                self._step(lambda now: self._logic.passage_started(now, exempt=True))
            self._step(self._logic.tick)
        self._ticker = threading.Thread(target=self._tick_loop, name="barrier-ticker", daemon=True)
        self._ticker.start()

    # -- commands -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Take the lane into service: the relay leaves the safe state and the barrier closes."""
        self._command(self._logic.start)

    def grant(self, n_persons: int, grant_id: str) -> bool:
        """Open for ``n_persons`` passages (or queue behind the grant in progress).

        Returns False if the grant was rejected; the :class:`GrantRejected` event with the reason is
        delivered as well, and is what accounting should act on.
        """
        events = self._command(lambda now: self._logic.grant(n_persons, grant_id, now))
        return not any(isinstance(e, GrantRejected) and e.grant_id == grant_id for e in events)

    def deny(self) -> None:
        """Show the deny pattern (red lamp, two short beeps); the relay is not touched."""
        self._command(self._logic.deny)

    def set_out_of_order(self, active: bool) -> None:
        """Close the lane with the out-of-order pattern (camera dead, ledger unusable), or reopen it."""
        self._command(lambda now: self._logic.set_out_of_order(active, now))

    def safe_state(self) -> None:
        """Park the relay in the configured safe state and end all grants; :meth:`start` resumes."""
        self._command(self._logic.enter_safe_state)

    def close(self) -> None:
        """Go to the safe state, stop the ticker and release the pins. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            try:
                self._step(self._logic.enter_safe_state)
            finally:
                self._closed = True
                self._wake.notify_all()
        if self._ticker is not threading.current_thread():
            self._ticker.join(timeout=5)
        self._release()

    def __enter__(self) -> Barrier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- status ---------------------------------------------------------------------------------------
    @property
    def state(self) -> BarrierStatus:
        """A snapshot of the lane (mode, relay, pattern, beam, grant in progress, queue)."""
        with self._lock:
            return self._logic.status()

    def relay_energised_at(self, grant_id: str) -> float | None:
        """The ``time.monotonic()`` at which the relay was (or already stood) energised for a grant.

        Taken right after the pin write, so ``relay_energised_at(id) - frame_time`` is the gate's
        frame-to-relay latency. A queued grant gets the time it took over the open barrier.
        """
        with self._lock:
            return self._energised_at.get(grant_id)

    def __repr__(self) -> str:
        status = "closed" if self._closed else self.state.mode.value
        return f"<Barrier relay={self.config.relay_pin!r} {status}>"

    # -- internals ------------------------------------------------------------------------------------
    def _command(self, step: Callable[[float], list[BarrierEvent]]) -> list[BarrierEvent]:
        with self._lock:
            if self._closed:
                raise BarrierClosedError("the barrier is closed")
            return self._step(step)

    def _on_beam(self, broken: bool) -> None:
        self._step(self._logic.passage_started if broken else self._logic.passage_completed)

    def _on_fire(self, active: bool) -> None:
        self._step(lambda now: self._logic.fire_alarm(active, now))

    def _step(self, step: Callable[[float], list[BarrierEvent]]) -> list[BarrierEvent]:
        """Run one logic step under the lock, drive the outputs, deliver the events in order."""
        with self._lock:
            if self._closed:  # a late gpiozero callback racing close()
                return []
            events = step(time.monotonic())
            self._apply()
            self._pending.extend(events)
            self._wake.notify()  # the next deadline may have moved
            self._dispatch()
            return events

    def _apply(self) -> None:
        relay_open = self._logic.relay_open
        # The relay before the lamps: it is what the benchmark times and what the visitor waits for.
        if relay_open != self._relay_value:
            if relay_open:
                self._relay.on()
            else:
                self._relay.off()
            self._relay_value = relay_open
        grant_id = self._logic.active_grant_id
        if relay_open and grant_id is not None and grant_id not in self._energised_at:
            self._energised_at[grant_id] = time.monotonic()
            while len(self._energised_at) > _ENERGISED_KEPT:
                self._energised_at.popitem(last=False)
        pattern = self._logic.pattern
        if pattern != self._pattern:
            self._pattern = pattern
            shown = INDICATIONS[pattern]
            _drive(self._green, shown.green)
            _drive(self._red, shown.red)
            _drive(self._buzzer, shown.buzzer)

    def _dispatch(self) -> None:
        # A handler that calls back into the barrier (same thread, re-entrant lock) only queues its
        # events here; the outermost call delivers everything, in the order it happened.
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._pending:
                event = self._pending.popleft()
                if self._on_event is None:
                    self.events.put(event)
                    continue
                try:
                    self._on_event(event)
                except Exception:  # a broken handler must not stop the barrier from closing
                    log.exception("barrier event handler failed on %r", event)
        finally:
            self._dispatching = False

    def _tick_loop(self) -> None:
        with self._wake:
            while not self._closed:
                deadline = self._logic.next_deadline
                wait = _IDLE_WAKE_S if deadline is None else deadline - time.monotonic()
                if wait > 0:
                    self._wake.wait(min(wait, _IDLE_WAKE_S))
                    continue  # woken early by a new event, or on time: re-read the deadline
                try:
                    self._step(self._logic.tick)
                except Exception:
                    # A barrier whose timers died would stay open forever; rest in the safe state.
                    log.exception("barrier ticker failed; entering the safe state")
                    self._step(self._logic.enter_safe_state)
                    self._wake.wait(_IDLE_WAKE_S)

    def _release(self) -> None:
        # Reverse construction order: inputs first so that no callback arrives half-way, the relay
        # last so that it holds the safe state for as long as we hold the pins.
        for device in reversed(self._closeables):
            try:
                device.close()
            except Exception:
                log.exception("closing %r failed", device)
        self._closeables.clear()
