"""The barrier's rules as a pure state machine: no pins, no threads, time passed in.

:class:`BarrierLogic` is told what happened (a grant, the beam broken or cleared, the fire alarm, the
clock moving on) and answers with events; between calls its properties say what the outputs should be
(:attr:`~BarrierLogic.relay_open`, :attr:`~BarrierLogic.pattern`). :class:`citypass.gate.barrier.gpio.Barrier`
feeds it from gpiozero callbacks and a ticker thread; tests feed it numbers.

A party of two on one code, one of whom never comes::

    >>> from citypass.gate.barrier.config import BarrierConfig
    >>> logic = BarrierLogic(BarrierConfig(passage_timeout_s=8, open_per_person_s=5))
    >>> logic.relay_open                  # not started: resting in the (fail-secure) safe state
    False
    >>> logic.start(now=0.0)
    []
    >>> logic.grant(2, "tap-1", now=1.0)
    []
    >>> logic.relay_open, logic.pattern
    (True, <Pattern.ALLOW: 'allow'>)
    >>> logic.passage_started(now=3.0)    # the beam breaks...
    []
    >>> logic.passage_completed(now=3.8)  # ...and clears: one person through
    [PassageConfirmed(grant_id='tap-1', person_index=0, at=3.8)]
    >>> logic.next_deadline               # the second person has open_per_person_s to follow
    8.8
    >>> [expired] = logic.tick(now=9.0)   # nobody followed: close, and report one entry unused
    >>> expired.grant_id, expired.persons_passed, expired.persons_unused, expired.reason
    ('tap-1', 1, 1, <ExpiryReason.TIMEOUT: 'timeout'>)
    >>> logic.relay_open
    False

Rules, and why
--------------
* **Windows.** After a grant opens the barrier the first person has ``passage_timeout_s`` to break the
  beam; each further member of a party has ``open_per_person_s`` after the previous one cleared it. When
  a window runs out the grant ends with :class:`GrantExpired` so the caller annuls the unused entries:
  a barrier that opened for nobody must not burn the ticket.
* **Never time out on a person.** The windows only run while the beam is clear; a person standing in
  the lane is still passing. If the beam stays broken for ``held_open_alarm_s`` a :class:`HeldOpen`
  alarm is raised instead (lane blocked, barrier held open, or a dirty sensor).
* **A party of N is N passages.** The N-th passage closes the barrier at once, so a follower meets a
  closed barrier (and, if they push through, a :class:`ForcedEntry`).
* **Grants during a grant are queued**, up to ``max_queued_grants``: in a 2.4 s-per-person lane the next
  visitor scans while the party ahead is still walking through, and making them scan again would halve
  the lane's throughput. The barrier stays open across the hand-over and passages are credited in
  order. Beyond the queue a grant is rejected as ``busy``; the same grant id again (one code seen in
  several frames) is rejected as ``duplicate``. One beam cannot tell people apart, so if a party
  member drops out and the next visitor walks through in their place, the credit goes to the party and
  the next grant expires with one unused: the number of people through always equals the number charged.
* **Fire alarm** frees the barrier whatever the fail mode, ends all grants (unused entries are
  annulled), rejects new ones, and counts nothing: an evacuation is neither paid nor forced.
* **Safe state** (before :meth:`start`, after :meth:`enter_safe_state`) rests the relay where the fail
  mode says; **out of order** (:meth:`set_out_of_order`) is the daemon choosing to close a lane it
  cannot serve (camera dead, ledger unusable), so the relay is closed whatever the fail mode.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from citypass.gate.barrier.config import BarrierConfig
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
from citypass.gate.barrier.patterns import Pattern

_NEVER = float("-inf")


class BarrierMode(StrEnum):
    """The lane's state in one word, for status pages and health reports."""

    OUT_OF_SERVICE = "out_of_service"  # not started, or parked in the safe state
    IDLE = "idle"  # closed, waiting for a grant
    OPEN = "open"  # a grant is in progress
    OUT_OF_ORDER = "out_of_order"  # closed by the daemon
    FIRE_ALARM = "fire_alarm"  # free for evacuation


@dataclass(frozen=True, slots=True)
class BarrierStatus:
    """A snapshot of the lane for status reports (see :meth:`BarrierLogic.status`)."""

    mode: BarrierMode
    relay_open: bool
    pattern: Pattern
    beam_broken: bool
    held_open: bool
    grant_id: str | None
    persons_passed: int
    persons_expected: int
    queued: tuple[str, ...]
    window_deadline: float | None


@dataclass(slots=True)
class _Grant:
    grant_id: str
    n_persons: int
    passed: int = 0


class BarrierLogic:
    """The rules of one lane. Every method takes ``now`` (monotonic seconds) and returns new events."""

    def __init__(self, config: BarrierConfig) -> None:
        self._cfg = config
        self._now = _NEVER
        self._in_service = False
        self._out_of_order = False
        self._fire_since: float | None = None
        self._active: _Grant | None = None
        self._queue: deque[_Grant] = deque()
        self._deadline: float | None = None  # the next person must break the beam by then
        self._beam_since: float | None = None  # beam broken since (None = clear)
        self._beam_exempt = False  # began in a fire alarm or found at boot: neither counted nor forced
        self._held_open_reported = False
        self._held_open_at: float | None = None  # when a still-broken beam becomes a HeldOpen alarm
        self._deny_until = _NEVER
        self._alarm_until = _NEVER

    # -- inputs ---------------------------------------------------------------------------------------
    def start(self, now: float) -> list[BarrierEvent]:
        """Take the lane into service: the relay leaves the safe state and closes."""
        events = self._due(now)
        self._in_service = True
        return events

    def enter_safe_state(self, now: float) -> list[BarrierEvent]:
        """Park the relay in the fail mode's safe state and end every grant (reason ``safe_state``)."""
        events = self._due(now)
        self._in_service = False
        events += self._end_all(now, ExpiryReason.SAFE_STATE)
        return events

    def set_out_of_order(self, active: bool, now: float) -> list[BarrierEvent]:
        """Close the lane (``active=True``) because the gate cannot serve it, or reopen it."""
        events = self._due(now)
        self._out_of_order = active
        if active:
            events += self._end_all(now, ExpiryReason.OUT_OF_ORDER)
        return events

    def grant(self, n_persons: int, grant_id: str, now: float) -> list[BarrierEvent]:
        """Open for ``n_persons`` passages, or queue behind the grant in progress, or reject.

        A rejection is returned as a :class:`GrantRejected` event; an accepted grant returns no event
        of its own (its outcome comes later as passages and perhaps a :class:`GrantExpired`).
        """
        if n_persons < 1:
            raise ValueError(f"a grant is for at least one person, not {n_persons}")
        events = self._due(now)
        reason = self._reject_reason(grant_id)
        if reason is not None:
            events.append(GrantRejected(grant_id, n_persons, reason, now))
            return events
        # A visitor who was just denied and rescans a good code must see green at once, not after
        # the red has run its course.
        self._deny_until = _NEVER
        if self._active is None:
            self._activate(_Grant(grant_id, n_persons), now)
        else:
            self._queue.append(_Grant(grant_id, n_persons))
        return events

    def deny(self, now: float) -> list[BarrierEvent]:
        """Show the deny pattern for ``deny_display_s``; the relay is not touched."""
        events = self._due(now)
        self._deny_until = now + self._cfg.deny_display_s
        return events

    def passage_started(self, now: float, *, exempt: bool = False) -> list[BarrierEvent]:
        """The beam was broken.

        ``exempt=True`` says the beam was *found* broken (at boot) rather than seen breaking: whoever
        or whatever is in the lane, its clearing is neither credited to a grant nor reported as forced.
        """
        events = self._due(now)
        if self._beam_since is None:  # a repeated edge (bounce, restart) is not a second person
            self._beam_since = now
            self._beam_exempt = exempt or self._fire_since is not None
            self._held_open_reported = False
            self._held_open_at = now + self._cfg.held_open_alarm_s
        return events

    def passage_completed(self, now: float) -> list[BarrierEvent]:
        """The beam cleared: one passage is complete. It is credited, exempt (fire) or forced."""
        events = self._due(now)
        since = self._beam_since
        if since is None:  # cleared without having been broken (e.g. broken before we started)
            return events
        self._beam_since = None
        self._held_open_at = None
        if self._held_open_reported:
            self._held_open_reported = False
            events.append(HeldOpenCleared(since, now))
        if self._fire_since is not None or self._beam_exempt:
            return events
        active = self._active
        if active is None:
            barrier_was_open = self.relay_open
            events.append(ForcedEntry(at=now, started_at=since, barrier_open=barrier_was_open))
            if not barrier_was_open:  # walking through a barrier parked open is not worth a siren
                self._alarm_until = now + self._cfg.forced_entry_alarm_s
            return events
        events.append(PassageConfirmed(active.grant_id, active.passed, now))
        active.passed += 1
        if active.passed >= active.n_persons:
            self._next_grant(now)
        else:
            self._deadline = now + self._cfg.open_per_person_s
        return events

    def fire_alarm(self, active: bool, now: float) -> list[BarrierEvent]:
        """The fire-alarm input changed. Active: free the barrier and end all grants."""
        events = self._due(now)
        if active and self._fire_since is None:
            self._fire_since = now
            events.append(FireAlarmStarted(now))
            events += self._end_all(now, ExpiryReason.FIRE_ALARM)
            if self._beam_since is not None:
                self._beam_exempt = True
        elif not active and self._fire_since is not None:
            events.append(FireAlarmCleared(self._fire_since, now))
            self._fire_since = None
            if self._beam_since is not None and not self._held_open_reported:
                # The crowd leaving is no blocked lane; the held-open clock starts again from here.
                self._held_open_at = now + self._cfg.held_open_alarm_s
        return events

    def tick(self, now: float) -> list[BarrierEvent]:
        """Let time pass: windows expire, held-open alarms fire, brief patterns end."""
        return self._due(now)

    # -- outputs --------------------------------------------------------------------------------------
    @property
    def safe_relay_open(self) -> bool:
        """The relay value of the configured safe state (True = open, for ``fail_safe``)."""
        return self._cfg.safe_relay_open

    @property
    def relay_open(self) -> bool:
        """Whether the relay should be energised (barrier open) now."""
        if self._fire_since is not None:
            return True
        if not self._in_service:
            return self._cfg.safe_relay_open
        return not self._out_of_order and self._active is not None

    @property
    def pattern(self) -> Pattern:
        """The lamp and buzzer pattern the lane should show, as of the last call."""
        if self._fire_since is not None:
            return Pattern.FIRE
        if self._held_open_reported or self._now < self._alarm_until:
            return Pattern.ALARM
        if not self._in_service or self._out_of_order:
            return Pattern.OUT_OF_ORDER
        if self._now < self._deny_until:
            return Pattern.DENY
        return Pattern.ALLOW if self._active is not None else Pattern.IDLE

    @property
    def mode(self) -> BarrierMode:
        """The lane's state in one word."""
        if self._fire_since is not None:
            return BarrierMode.FIRE_ALARM
        if not self._in_service:
            return BarrierMode.OUT_OF_SERVICE
        if self._out_of_order:
            return BarrierMode.OUT_OF_ORDER
        return BarrierMode.OPEN if self._active is not None else BarrierMode.IDLE

    @property
    def active_grant_id(self) -> str | None:
        """The grant whose passages are being counted, if any."""
        return None if self._active is None else self._active.grant_id

    @property
    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`tick` would change something (None: nothing pending)."""
        due: list[float] = []
        if self._active is not None and self._beam_since is None and self._deadline is not None:
            due.append(self._deadline)
        if self._held_open_at is not None and self._fire_since is None:
            due.append(self._held_open_at)
        due.extend(t for t in (self._deny_until, self._alarm_until) if t > self._now)
        return min(due, default=None)

    def status(self) -> BarrierStatus:
        """A snapshot of the lane."""
        active = self._active
        return BarrierStatus(
            mode=self.mode,
            relay_open=self.relay_open,
            pattern=self.pattern,
            beam_broken=self._beam_since is not None,
            held_open=self._held_open_reported,
            grant_id=None if active is None else active.grant_id,
            persons_passed=0 if active is None else active.passed,
            persons_expected=0 if active is None else active.n_persons,
            queued=tuple(g.grant_id for g in self._queue),
            window_deadline=self._deadline if active is not None else None,
        )

    # -- internals ------------------------------------------------------------------------------------
    def _reject_reason(self, grant_id: str) -> RejectReason | None:
        if self._fire_since is not None:
            return RejectReason.FIRE_ALARM
        if not self._in_service:
            return RejectReason.OUT_OF_SERVICE
        if self._out_of_order:
            return RejectReason.OUT_OF_ORDER
        pending = [] if self._active is None else [self._active, *self._queue]
        if any(g.grant_id == grant_id for g in pending):
            return RejectReason.DUPLICATE
        if self._active is not None and len(self._queue) >= self._cfg.max_queued_grants:
            return RejectReason.BUSY
        return None

    def _activate(self, grant: _Grant, now: float) -> None:
        self._active = grant
        self._deadline = now + self._cfg.passage_timeout_s

    def _next_grant(self, now: float) -> None:
        # The relay stays open across the hand-over; the queued visitor's window starts now, not when
        # they scanned, because they could not walk through while the party ahead was passing.
        self._active = None
        self._deadline = None
        if self._queue:
            self._activate(self._queue.popleft(), now)

    def _end_all(self, now: float, reason: ExpiryReason) -> list[BarrierEvent]:
        ended = [] if self._active is None else [self._active, *self._queue]
        self._active, self._deadline = None, None
        self._queue.clear()
        return [GrantExpired(g.grant_id, g.passed, g.n_persons - g.passed, now, reason) for g in ended]

    def _due(self, now: float) -> list[BarrierEvent]:
        self._now = now
        events: list[BarrierEvent] = []
        active = self._active
        # Windows only run while the beam is clear: a person in the lane is still passing.
        deadline = self._deadline if self._beam_since is None else None
        if active is not None and deadline is not None and now >= deadline:
            unused = active.n_persons - active.passed
            events.append(GrantExpired(active.grant_id, active.passed, unused, now))
            self._next_grant(now)
        # Compared with the very number next_deadline reports, so a tick at that deadline always
        # raises the alarm (recomputing now - since could round the other way and spin the ticker).
        alarm_at, since = self._held_open_at, self._beam_since
        if alarm_at is not None and since is not None and self._fire_since is None and now >= alarm_at:
            self._held_open_at = None
            self._held_open_reported = True
            events.append(HeldOpen(since, now, self.active_grant_id))
        return events
