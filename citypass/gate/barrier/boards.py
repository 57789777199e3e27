"""Board profiles: the wiring of the relay boards a gate is commonly built from, by name.

``citypass provision enroll --board PROFILE`` writes the profile's ``[barrier]`` settings into the gate
config, and explicit options (``--relay-pin``, ``--relay-active-low``, ``--fire-alarm-contact``,
``--fail-mode`` …) override single values. Pin numbers are BCM (``GPIO17``), as gpiozero counts them.

=====================  ======================================================================================
``generic-active-low``  (the default) the common opto-isolated 1-4 channel relay modules: relay on GPIO17,
                        energised by driving it **low**; passage beam GPIO27 (reads low while broken);
                        green/red lamps GPIO22/23, buzzer GPIO24; fire-panel contact on GPIO25,
                        **normally closed** to ground with the internal pull-up (an alarm or a cut
                        wire reads high and frees the lane)
``generic-active-high`` the same pins, for relay boards driven high (transistor-input modules, HATs with
                        a driver chip): relay energised by driving GPIO17 high
``waveshare-rpi-relay`` Waveshare RPi Relay Board (3 channels, active low): the barrier on channel 1
                        (GPIO26); beam, lamps, buzzer and fire contact as ``generic-active-low``
=====================  ======================================================================================

The fail mode (where the barrier rests when the software is not in control) is the site's decision, not
the board's: every profile says ``fail_secure`` (closed) and ``--fail-mode fail_safe`` frees the lane
instead (indoors, on an evacuation route).

    >>> board_settings("waveshare-rpi-relay")["relay_pin"]
    26
    >>> board_settings("generic-active-low", {"fail_mode": "fail_safe"})["fail_mode"]
    'fail_safe'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from citypass.errors import InvalidInput
from citypass.gate.barrier.config import BarrierConfig

_COMMON: Final[dict[str, Any]] = {
    "sensor_pin": 27, "sensor_pull_up": True, "sensor_active_low": True,
    "green_led_pin": 22, "red_led_pin": 23, "buzzer_pin": 24,
    # Normally-closed contact to ground, pulled up: quiet reads low; an alarm or a cut wire reads high.
    "fire_alarm_pin": 25, "fire_alarm_pull_up": True, "fire_alarm_active_low": False,
    "fail_mode": "fail_secure",
}

BOARDS: Final[dict[str, dict[str, Any]]] = {
    "generic-active-low": {**_COMMON, "relay_pin": 17, "relay_active_high": False},
    "generic-active-high": {**_COMMON, "relay_pin": 17, "relay_active_high": True},
    "waveshare-rpi-relay": {**_COMMON, "relay_pin": 26, "relay_active_high": False},
}
DEFAULT_BOARD: Final = "generic-active-low"


def board_settings(board: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``[barrier]`` settings of ``board`` with ``overrides`` applied, checked as a :class:`BarrierConfig`
    (distinct pins, known fail mode); :class:`InvalidInput` names what is wrong."""
    if board not in BOARDS:
        raise InvalidInput(f"unknown board {board!r}: one of {', '.join(BOARDS)}")
    settings = {**BOARDS[board], **{k: v for k, v in (overrides or {}).items() if v is not None}}
    try:
        BarrierConfig(**settings)
    except ValueError as exc:
        raise InvalidInput(f"board {board} with these pins: {exc}") from None
    return settings
