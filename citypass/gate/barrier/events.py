"""What a barrier tells the rest of the gate: passages, unused grants, alarms.

Events are small frozen dataclasses emitted by :class:`citypass.gate.barrier.logic.BarrierLogic` (and delivered by
:class:`citypass.gate.barrier.gpio.Barrier`). The two that matter for accounting are :class:`PassageConfirmed`
(one person of a grant went through: the entry is used) and :class:`GrantExpired` (the barrier opened
but ``persons_unused`` people never passed: the caller must annul those consumptions so that a ticket
is not burned for nobody). A :class:`GrantRejected` grant never opened the barrier at all and must be
annulled whole.

Every event carries ``at``, the monotonic time it happened, so the caller can timestamp tap records.

    >>> ev = GrantExpired("tap-42", persons_passed=1, persons_unused=2, at=10.0)
    >>> ev.persons_unused, ev.reason
    (2, <ExpiryReason.TIMEOUT: 'timeout'>)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RejectReason(StrEnum):
    """Why a grant did not open the barrier. Values are stable snake_case codes for tap records."""

    BUSY = "busy"  # a grant is in progress and the queue behind it is full
    DUPLICATE = "duplicate"  # this grant id is already in progress or queued (same code seen twice)
    FIRE_ALARM = "fire_alarm"  # the barrier is free anyway; nothing to count
    OUT_OF_ORDER = "out_of_order"  # the lane was closed by the daemon (camera dead, ledger unusable...)
    OUT_OF_SERVICE = "out_of_service"  # not started yet, or parked in the safe state


class ExpiryReason(StrEnum):
    """Why an accepted grant ended before all its persons passed."""

    TIMEOUT = "timeout"  # nobody (or not everybody) came within the passage window
    FIRE_ALARM = "fire_alarm"  # a fire alarm freed the barrier; passages are no longer counted
    OUT_OF_ORDER = "out_of_order"  # the lane was closed while the grant was open or queued
    SAFE_STATE = "safe_state"  # the barrier was parked in its safe state (shutdown, fatal error)


@dataclass(frozen=True, slots=True)
class PassageConfirmed:
    """Person ``person_index`` (0-based) of grant ``grant_id`` broke and then cleared the beam."""

    grant_id: str
    person_index: int
    at: float


@dataclass(frozen=True, slots=True)
class GrantExpired:
    """A grant ended with ``persons_unused`` entries not taken; the caller annuls those."""

    grant_id: str
    persons_passed: int
    persons_unused: int
    at: float
    reason: ExpiryReason = ExpiryReason.TIMEOUT


@dataclass(frozen=True, slots=True)
class GrantRejected:
    """A grant never opened the barrier; the caller annuls all ``n_persons`` entries."""

    grant_id: str
    n_persons: int
    reason: RejectReason
    at: float


@dataclass(frozen=True, slots=True)
class ForcedEntry:
    """Somebody passed (beam broken then cleared) with no grant open: pushed, jumped or tailgated.

    ``barrier_open`` tells a push through a closed barrier (an alarm) from a walk through a barrier
    resting open in its fail-safe state (recorded, but nobody was stopped).
    """

    at: float
    started_at: float
    barrier_open: bool = False


@dataclass(frozen=True, slots=True)
class HeldOpen:
    """The beam has been broken since ``since``: the lane is blocked or the barrier is being held open."""

    since: float
    at: float
    grant_id: str | None


@dataclass(frozen=True, slots=True)
class HeldOpenCleared:
    """The beam cleared after a :class:`HeldOpen` alarm."""

    since: float
    at: float


@dataclass(frozen=True, slots=True)
class FireAlarmStarted:
    """The fire-alarm input became active: the barrier is free and passages are not counted."""

    at: float


@dataclass(frozen=True, slots=True)
class FireAlarmCleared:
    """The fire-alarm input returned to normal after being active since ``since``."""

    since: float
    at: float


BarrierEvent = (
    PassageConfirmed
    | GrantExpired
    | GrantRejected
    | ForcedEntry
    | HeldOpen
    | HeldOpenCleared
    | FireAlarmStarted
    | FireAlarmCleared
)
"""Everything a barrier can emit."""
