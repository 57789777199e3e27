"""What a gate is configured to be and do, as plain values: its direction, the kinds of tap it records, and
how it behaves when things are not normal (:class:`GatePolicy`).

They live apart from the decision core (:mod:`citypass.gate.decision`, which re-exports them) so that the
gate's config (:mod:`citypass.gate.config`) can be read without loading the verifier and its cryptography —
a firmware hook that only parks the barrier reads the config too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from citypass.credential.policy import VerifyPolicy


class Direction(StrEnum):
    ENTRY = "entry"
    EXIT = "exit"


class TapKind(StrEnum):
    """What an allowed decision records."""

    ENTRY = "entry"  # an admission (consumes usage)
    EXIT = "exit"  # leaving a site (counts for occupancy only)
    TAP_IN = "tap_in"  # metro entry
    TAP_OUT = "tap_out"  # metro exit
    TAP = "tap"  # bus / water bus single tap


@dataclass(frozen=True)
class GatePolicy:
    """How the gate behaves when things are not normal. Defaults favour the flow of visitors while
    keeping every exception visible."""

    verify: VerifyPolicy = field(default_factory=VerifyPolicy)
    stale_ledger: Literal["allow_flag", "deny"] = "allow_flag"
    untrusted_clock_static: Literal["allow_flag", "deny"] = "allow_flag"
    untrusted_clock_dynamic: Literal["allow_flag", "deny"] = "deny"
    metro_max_journey_minutes: int = 240
    exit_requires_tap_in: bool = False  # True only where every station's tap-ins reach this gate's ledger
