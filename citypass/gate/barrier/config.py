"""Typed configuration of a gate's barrier: which pins, which way round, how long to wait.

One :class:`BarrierConfig` describes the wiring (six GPIO pins and their polarity), the timings of a
passage, and the *fail mode* that decides where the barrier rests when the software is not in control.

Example::

    >>> cfg = BarrierConfig(relay_pin=5, relay_active_high=False, fail_mode="fail_safe")
    >>> cfg.safe_relay_open
    True
    >>> BarrierConfig(fail_mode="fail_secure").safe_relay_open
    False
    >>> BarrierConfig(passage_timout_s=3)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for BarrierConfig
    ...

Unknown keys are rejected so that a technician's typo ("passage_timout_s") stops the gate at start-up
instead of silently running with the default.

Polarity of the inputs
----------------------
gpiozero ties an input's active level to its pull resistor (pull-up means "active when low"). Real
sensors do not always agree: an open-collector break-beam receiver with a pull-up reads *high* while the
beam is broken, and a normally-closed fire-panel contact reads *high* on alarm (and on a cut wire, which
is why fire panels use NC contacts). So the pull resistor (``*_pull_up``) and the meaning of the level
(``*_active_low``) are configured separately; :mod:`citypass.gate.barrier.gpio` inverts in software when gpiozero's
convention and the sensor's disagree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from citypass.errors import InvalidInput

FailMode = Literal["fail_safe", "fail_secure"]
"""``fail_safe``: barrier free when software or power fails (evacuation first, typical indoors and in
metro paid areas). ``fail_secure``: barrier closed (typical at scenic spots with separate emergency exits)."""

PinId = int | str
"""A gpiozero pin name: a BCM number (``17``) or another name gpiozero knows (``"GPIO17"``, ``"BOARD11"``)."""


class BarrierConfig(BaseModel):
    """Wiring, polarity and timings of one lane's barrier (turnstile or flap gate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- pins -----------------------------------------------------------------------------------------
    relay_pin: PinId = Field(default=17, description="GPIO driving the relay that opens (releases) the barrier.")
    sensor_pin: PinId = Field(
        default=27,
        description="GPIO of the passage sensor: a light beam that is broken while a person passes.",
    )
    green_led_pin: PinId = Field(default=22, description="GPIO of the green 'pass' lamp.")
    red_led_pin: PinId = Field(default=23, description="GPIO of the red 'stop' lamp.")
    buzzer_pin: PinId = Field(default=24, description="GPIO of the active buzzer.")
    fire_alarm_pin: PinId = Field(
        default=25,
        description="GPIO wired to the building's fire-alarm panel contact (alarm frees the barrier).",
    )

    # -- polarity -------------------------------------------------------------------------------------
    relay_active_high: bool = Field(
        default=True,
        description="True if driving the relay pin high energises the relay (opens the barrier); "
        "False for the common active-low relay boards.",
    )
    sensor_pull_up: bool | None = Field(
        default=True,
        description="Pull resistor on the sensor pin: True = internal pull-up, False = pull-down, "
        "\"floating\" (or None) = no internal resistor (an external one sets the idle level).",
    )
    sensor_active_low: bool = Field(
        default=True, description="True if the sensor pin reads low while the beam is broken."
    )
    sensor_bounce_s: float | None = Field(
        default=0.02,
        ge=0,
        description="Debounce time of the sensor in seconds (gpiozero bounce_time); 0 disables it.",
    )
    fire_alarm_pull_up: bool | None = Field(
        default=True,
        description="Pull resistor on the fire-alarm pin: True = up, False = down, None = floating "
        "\"floating\" = none (an external resistor sets the idle level).",
    )
    fire_alarm_active_low: bool = Field(
        default=True,
        description="True if the fire-alarm pin reads low during an alarm (normally-open contact to ground); "
        "use False with a normally-closed contact so that a cut wire also frees the barrier.",
    )
    fire_alarm_bounce_s: float | None = Field(
        default=0.05, ge=0, description="Debounce time of the fire-alarm input in seconds; 0 disables it."
    )

    # -- behaviour ------------------------------------------------------------------------------------
    fail_mode: FailMode = Field(
        default="fail_secure",
        description="Where the relay rests when the software is not in control (boot, shutdown, crash, "
        "safe_state()): 'fail_safe' = barrier open/free for evacuation, 'fail_secure' = barrier closed.",
    )
    passage_timeout_s: float = Field(
        default=8.0,
        gt=0,
        description="Seconds the first person of a grant has to reach the barrier and break the beam; "
        "if nobody does, the barrier closes and the unused entries are reported (GrantExpired).",
    )
    open_per_person_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds the barrier stays open for each further member of a party; restarted by "
        "every completed passage.",
    )
    held_open_alarm_s: float = Field(
        default=20.0,
        gt=0,
        description="Seconds the beam may stay broken (the lane blocked, the barrier held open) before a "
        "HeldOpen alarm is raised.",
    )
    max_queued_grants: int = Field(
        default=1,
        ge=0,
        le=8,
        description="Grants that may wait behind the one in progress (the next visitor scanning while a "
        "party passes); further grants are rejected as 'busy'.",
    )
    deny_display_s: float = Field(default=1.5, gt=0, description="Seconds the red lamp shows after a deny.")
    forced_entry_alarm_s: float = Field(
        default=3.0, gt=0, description="Seconds the alarm sounds after a passage without a grant."
    )

    @field_validator("sensor_pull_up", "fire_alarm_pull_up", mode="before")
    @classmethod
    def _floating(cls, value: object) -> object:
        # TOML has no null: "floating" is how a config file asks for no internal pull resistor
        return None if value == "floating" else value

    @field_validator("sensor_bounce_s", "fire_alarm_bounce_s", mode="before")
    @classmethod
    def _zero_bounce(cls, value: object) -> object:
        return None if value == 0 else value

    @model_validator(mode="after")
    def _pins_are_distinct(self) -> BarrierConfig:
        pins = {
            "relay_pin": self.relay_pin,
            "sensor_pin": self.sensor_pin,
            "green_led_pin": self.green_led_pin,
            "red_led_pin": self.red_led_pin,
            "buzzer_pin": self.buzzer_pin,
            "fire_alarm_pin": self.fire_alarm_pin,
        }
        seen: dict[str, str] = {}
        for name, pin in pins.items():
            # 17 and "17" name the same BCM pin; compare the text so they collide too.
            key = str(pin).upper()
            if key in seen:
                raise InvalidInput(f"{name} and {seen[key]} are both wired to pin {pin!r}")
            seen[key] = name
        return self

    @property
    def safe_relay_open(self) -> bool:
        """The relay's *logical* value in the safe state: True (barrier open) when fail-safe."""
        return self.fail_mode == "fail_safe"
