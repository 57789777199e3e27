"""The lane's barrier: relay, passage sensor, lamps, buzzer and fire-alarm input.

The parts, in the order a reader needs them:

* :mod:`citypass.gate.barrier.config` — :class:`BarrierConfig`, the wiring, timings and fail mode;
* :mod:`citypass.gate.barrier.events` — what the barrier reports (passages, unused grants, alarms);
* :mod:`citypass.gate.barrier.logic` — :class:`BarrierLogic`, the rules as a pure state machine;
* :mod:`citypass.gate.barrier.patterns` — what the lamps and buzzer do in each state;
* :mod:`citypass.gate.barrier.gpio` — :class:`~citypass.gate.barrier.gpio.Barrier`, the logic on gpiozero devices.

This package exports only the pure parts, so that code which merely reads barrier events (the tap
recorder, the benchmark's reports) does not import gpiozero::

    >>> from citypass.gate.barrier import BarrierConfig, BarrierLogic
    >>> BarrierLogic(BarrierConfig(fail_mode="fail_safe")).relay_open  # safe state before start()
    True

The device itself is ``from gate.barrier.gpio import Barrier``.
"""

from citypass.gate.barrier.config import BarrierConfig, FailMode
from citypass.gate.barrier.events import (
    BarrierEvent,
    ExpiryReason,
    FireAlarmCleared,
    FireAlarmStarted,
    ForcedEntry,
    GrantExpired,
    GrantRejected,
    HeldOpen,
    HeldOpenCleared,
    PassageConfirmed,
    RejectReason,
)
from citypass.gate.barrier.logic import BarrierLogic, BarrierMode, BarrierStatus
from citypass.gate.barrier.patterns import INDICATIONS, Blink, Indication, Pattern

__all__ = [
    "INDICATIONS",
    "BarrierConfig",
    "BarrierEvent",
    "BarrierLogic",
    "BarrierMode",
    "BarrierStatus",
    "Blink",
    "ExpiryReason",
    "FailMode",
    "FireAlarmCleared",
    "FireAlarmStarted",
    "ForcedEntry",
    "GrantExpired",
    "GrantRejected",
    "HeldOpen",
    "HeldOpenCleared",
    "Indication",
    "PassageConfirmed",
    "Pattern",
    "RejectReason",
]
