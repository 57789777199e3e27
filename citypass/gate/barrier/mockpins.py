"""Mock pins for ``pins = "mock"``: a lane at rest, whatever the wiring's polarity.

gpiozero's ``MockFactory`` leaves an input at its pull resistor's level. That is the *asserted* level of a
normally-closed fire-alarm contact with a pull-up (``fire_alarm_active_low = false``: the wire is cut, or
the panel opened the contact), so a gate run on mock pins with that (recommended) wiring saw a fire alarm
from the first second: every grant ended in ``fire_alarm`` while ``/healthz`` said healthy. Here the
passage sensor and the fire-alarm input rest at their *not asserted* level instead — the beam clear, the
panel quiet — as a correctly wired lane does; a test still drives them (``factory.pin(n).drive_low()``).

    >>> from citypass.gate.barrier.config import BarrierConfig
    >>> from citypass.gate.barrier.gpio import Barrier
    >>> cfg = BarrierConfig(fire_alarm_active_low=False, relay_pin=5, sensor_pin=6, green_led_pin=7,
    ...                     red_led_pin=8, buzzer_pin=9, fire_alarm_pin=10)
    >>> with Barrier(cfg, pin_factory=resting_mock_pins(cfg)) as barrier:
    ...     barrier.start()
    ...     barrier.state.mode.value
    'idle'
    >>> with Barrier(cfg, pin_factory=MockFactory()) as barrier:  # gpiozero's own: the phantom alarm
    ...     barrier.start()
    ...     barrier.state.mode.value
    'fire_alarm'
"""

from __future__ import annotations

from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

from citypass.gate.barrier.config import BarrierConfig


class _RestingPin(MockPin):  # type: ignore[misc]  # gpiozero is untyped
    """A mock input that stays at ``rest`` when its pull resistor is set (not at the pull's level)."""

    def __init__(self, factory: Any, info: Any, rest: bool = False) -> None:
        super().__init__(factory, info)
        self._rest = rest
        self._state = rest

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        self._change_state(self._rest)


def resting_mock_pins(cfg: BarrierConfig) -> Any:
    """A ``MockFactory`` whose sensor and fire-alarm inputs rest not asserted (see the module docstring)."""
    factory = MockFactory()
    # An input is asserted low when active_low, so it rests high (True) exactly when active_low.
    for pin, active_low in ((cfg.fire_alarm_pin, cfg.fire_alarm_active_low), (cfg.sensor_pin, cfg.sensor_active_low)):
        factory.pin(pin, pin_class=_RestingPin, rest=active_low)
    return factory
