"""What the lamps and the buzzer do in each state of the lane, as plain data.

The logic decides *which* :class:`Pattern` the lane shows; this module says what that pattern looks and
sounds like; :mod:`citypass.gate.barrier.gpio` plays it on gpiozero devices. Keeping the table here means a site
that wants a quieter buzzer changes one line, and tests can check patterns without any pins.

A :data:`Signal` is ``False`` (off), ``True`` (steady on) or a :class:`Blink`:

    >>> INDICATIONS[Pattern.ALLOW].buzzer
    Blink(on_s=0.1, off_s=0.1, n=1)
    >>> INDICATIONS[Pattern.DENY].buzzer.n
    2
    >>> INDICATIONS[Pattern.ALLOW].green, INDICATIONS[Pattern.ALLOW].red
    (True, False)

Buzzer patterns are chosen to be told apart by ear without looking at the gate: one short beep = go;
two short = no; a long repeating tone = alarm (someone forced or is blocking the lane); slow, sparse
beeps = out of order (use another lane).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Pattern(StrEnum):
    """What the lane is telling people, in priority order (the logic picks the first that applies)."""

    FIRE = "fire"  # fire alarm: the barrier is free, walk out
    ALARM = "alarm"  # forced entry, or the beam blocked past held_open_alarm_s
    OUT_OF_ORDER = "out_of_order"  # lane closed: not started, safe state, or set out of order
    DENY = "deny"  # a presentation was refused (shown briefly)
    ALLOW = "allow"  # a grant is open: walk through
    IDLE = "idle"  # closed and ready for the next code


@dataclass(frozen=True, slots=True)
class Blink:
    """Switch on for ``on_s``, off for ``off_s``, ``n`` times (``None`` = until told otherwise)."""

    on_s: float
    off_s: float
    n: int | None = None


Signal = bool | Blink
"""How one lamp or the buzzer behaves: off, steady on, or blinking."""


@dataclass(frozen=True, slots=True)
class Indication:
    """The green lamp, the red lamp and the buzzer for one :class:`Pattern`."""

    green: Signal
    red: Signal
    buzzer: Signal


INDICATIONS: dict[Pattern, Indication] = {
    # The building's own sounders are already loud during a fire; a buzzing gate would only add noise,
    # so the lane signals "free" with a fast green blink and stays quiet.
    Pattern.FIRE: Indication(green=Blink(0.25, 0.25), red=False, buzzer=False),
    Pattern.ALARM: Indication(green=False, red=Blink(0.2, 0.2), buzzer=Blink(0.8, 0.2)),
    # Three slow beeps catch a passer-by's attention; a gate that beeps for hours is soon unplugged.
    Pattern.OUT_OF_ORDER: Indication(green=False, red=Blink(1.0, 1.0), buzzer=Blink(0.3, 1.7, n=3)),
    Pattern.DENY: Indication(green=False, red=True, buzzer=Blink(0.1, 0.1, n=2)),
    Pattern.ALLOW: Indication(green=True, red=False, buzzer=Blink(0.1, 0.1, n=1)),
    Pattern.IDLE: Indication(green=False, red=False, buzzer=False),
}
"""The one table of lamp and buzzer behaviour, indexed by :class:`Pattern`."""
