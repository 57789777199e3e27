"""The gate's decision core: ``decide(presentation, ledger_view, context, now) -> Decision``.

Pure: no camera, GPIO, MQTT or SQLite is imported here and time is an argument, so every rule can be
tested at any instant and the daemon, ``citypass gate check`` and the benchmarks all decide the same
way. :func:`citypass.credential.verifier.verify` answers "is this code authentic and applicable here and now?";
this module adds what needs the gate's ledger and its own condition:

* **usage** — persons already admitted on a party ticket, anti-passback for annual passes (hard deny or
  soft allow-and-flag, per site), metro tap-in/tap-out pairing;
* **the site** — opening hours and capacity (entry only);
* **degraded conditions**, always visible as flags on the decision and in the tap record:
  - a ledger older than the site's staleness limit (``ledger_stale``): allow and flag by default, deny
    by policy;
  - a clock earlier than the ledger's last-known-time floor by more than the freshness skew
    (``clock_untrusted``; the floor rises with signed snapshots, deltas and issuer ticks): an RTC-less device
    booting in 1970 judges validity against the floor (the best lower bound of the true time it has)
    and flags every decision; dynamic codes, whose freshness cannot be judged without a clock, are
    denied by default;
  - a credential or key whose validity starts just after the gate's ``now`` (``clock_leeway``): the gate's
    clock may be behind the issuer's, so a start up to ``VerifyPolicy.leeway_s`` ahead is admitted and
    flagged (dynamic-code freshness keeps its own, tighter ``skew_s``).

Example (see tests/test_decision.py for every rule)::

    decision = decide(code_text, ledger, GateContext("g1", site), now=1_800_000_000)
    if decision.allowed:
        barrier.grant(decision.persons)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from citypass.credential.benefit import OFFLINE_AFTER_S, OFFLINE_ALLOWANCE, central_count, period_start
from citypass.credential.claims import Annual, Benefit, Credential, Event, Group, Reservation, Transit
from citypass.credential.reasons import Reason
from citypass.credential.sites import SiteKind, SiteSettings
from citypass.credential.trustlist import TrustList
from citypass.credential.verifier import RevocationView, Verdict, verify
from citypass.gate.policy import Direction, GatePolicy, TapKind

TIME_REASONS = frozenset({
    Reason.PRESENTATION_EXPIRED, Reason.PRESENTATION_FROM_FUTURE, Reason.EXPIRED, Reason.NOT_YET_VALID,
    Reason.SLOT_ENDED, Reason.SLOT_NOT_STARTED, Reason.KEY_RETIRED, Reason.KEY_NOT_YET_VALID,
})


@dataclass(frozen=True)
class GateContext:
    gate_id: str
    site: SiteSettings
    direction: Direction = Direction.ENTRY


@dataclass(frozen=True)
class Usage:
    """What the ledger knows about one credential (at one site, for ``last_entry_at``)."""

    persons_used: int = 0
    last_entry_at: int | None = None
    tapped_in_at: int | None = None
    tapped_in_site: int | None = None


class LedgerView(RevocationView, Protocol):
    """The gate ledger as the decision core sees it (read-only)."""

    @property
    def trust(self) -> TrustList: ...

    @property
    def synced_at(self) -> int | None:
        """When the ledger was last known fresh (snapshot or last applied update), Unix seconds."""

    @property
    def clock_floor(self) -> int:
        """A time the true clock is known to be past (the newest signed time the gate has seen)."""

    def usage(self, credential_id: bytes, site: int) -> Usage: ...

    def occupancy(self, site: int) -> int: ...

    def benefit_uses(self, credential_id: bytes, since: int) -> int:
        """Entries this gate (with its site's sibling lanes) admitted on ``credential_id`` at or after ``since``."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: Reason | None
    verdict: Verdict
    effective_now: int
    flags: tuple[Reason, ...] = ()
    persons: int = 0
    kind: TapKind | None = None
    #: a benefit card's uses left this period after this one (None for every other product)
    benefit_left: int | None = None

    @property
    def credential(self) -> Credential | None:
        return self.verdict.credential

    @property
    def presentation_id(self) -> bytes | None:
        return self.verdict.presentation_id


def decide(text: str, view: LedgerView, ctx: GateContext, now: int, policy: GatePolicy | None = None) -> Decision:
    """Decide on one presentation. Never raises on any ``text``; never waits on anything."""
    policy = policy or GatePolicy()
    flags: list[Reason] = []
    effective = now
    # Within the freshness skew of the floor the clock is as good as a phone's: a gate a second behind the
    # issuer must not turn "untrusted" each time a signed delta (issued at the issuer's now) raises the floor.
    clock_untrusted = now + policy.verify.skew_s < view.clock_floor
    if clock_untrusted:
        flags.append(Reason.CLOCK_UNTRUSTED)
        effective = view.clock_floor
    verdict = verify(text, view.trust, view, ctx.site, effective, policy.verify)

    def deny(reason: Reason) -> Decision:
        return Decision(False, reason, verdict, effective, tuple(flags))

    if clock_untrusted and verdict.parsed is not None and (verdict.allowed or verdict.reason in TIME_REASONS):
        dynamic = verdict.parsed.dynamic
        if (policy.untrusted_clock_dynamic if dynamic else policy.untrusted_clock_static) == "deny":
            return deny(Reason.CLOCK_UNTRUSTED)
    if not verdict.allowed:
        assert verdict.reason is not None
        return deny(verdict.reason)
    cred = verdict.credential
    assert cred is not None
    if verdict.leeway:  # the gate's clock may be behind the issuer's: admitted, and visibly so
        flags.append(Reason.CLOCK_LEEWAY)

    synced = view.synced_at
    if synced is None or effective - synced > ctx.site.staleness_hours * 3600:
        flags.append(Reason.LEDGER_STALE)
        if policy.stale_ledger == "deny":
            return deny(Reason.LEDGER_STALE)

    usage = view.usage(cred.id, ctx.site.number)
    outcome = _product_rules(cred, usage, view, ctx, effective, policy)
    if isinstance(outcome, Reason):
        return deny(outcome)
    kind, persons, extra = outcome
    flags.extend(extra)
    left = None
    if isinstance(cred.terms, Benefit) and kind is TapKind.ENTRY:
        benefit = benefit_rule(cred, cred.terms, view, ctx.site, effective)
        if isinstance(benefit, Reason):
            return deny(benefit)
        left = benefit
    return Decision(True, None, verdict, effective, tuple(flags), persons, kind, left)


def benefit_rule(cred: Credential, terms: Benefit, view: LedgerView, site: SiteSettings, now: int) -> Reason | int:
    """A benefit card's quota at this gate (:mod:`citypass.credential.benefit`): the uses left after this one,
    or why not. ``known`` = the centre's count at the last sync + this gate's admissions since then; an
    offline gate admits at most ``OFFLINE_ALLOWANCE`` uses the centre has not counted."""
    start = period_start(now, terms.period, site.utc_offset_minutes)
    central = central_count(view.is_revoked, cred.id, start, terms.quota)
    synced = view.synced_at
    since_sync = view.benefit_uses(cred.id, max(start, synced or 0))
    known = central + since_sync
    if known >= terms.quota:
        return Reason.QUOTA_EXHAUSTED
    if (synced is None or now - synced > OFFLINE_AFTER_S) and since_sync >= OFFLINE_ALLOWANCE:
        return Reason.QUOTA_UNCONFIRMED
    return terms.quota - known - 1


def _product_rules(
    cred: Credential, usage: Usage, view: LedgerView, ctx: GateContext, now: int, policy: GatePolicy
) -> Reason | tuple[TapKind, int, list[Reason]]:
    t = cred.terms
    site = ctx.site
    if isinstance(t, Transit):
        if site.kind is not SiteKind.METRO:
            return TapKind.TAP, 1, []
        max_journey = policy.metro_max_journey_minutes * 60
        open_tap_in = usage.tapped_in_at is not None and now - usage.tapped_in_at < max_journey
        if ctx.direction is Direction.ENTRY:
            return Reason.ALREADY_TAPPED_IN if open_tap_in else (TapKind.TAP_IN, 1, [])
        if not open_tap_in:
            if policy.exit_requires_tap_in:
                return Reason.NOT_TAPPED_IN
            return TapKind.TAP_OUT, 1, [Reason.NOT_TAPPED_IN]  # the issuer pairs journeys across stations
        return TapKind.TAP_OUT, 1, []

    if ctx.direction is Direction.EXIT:
        return TapKind.EXIT, 1, []
    if not is_open(site, now):
        return Reason.SITE_CLOSED
    flags: list[Reason] = []
    persons = 1
    if isinstance(t, Annual):
        minutes = t.passback_minutes if t.passback_minutes is not None else site.passback_minutes
        if usage.last_entry_at is not None and now - usage.last_entry_at < minutes * 60:
            if site.passback_hard:
                return Reason.PASSBACK
            flags.append(Reason.PASSBACK)
    elif isinstance(t, Reservation | Group):
        persons = t.party - usage.persons_used
        if persons <= 0:
            return Reason.ALREADY_USED
    elif isinstance(t, Event) and usage.last_entry_at is not None:  # one check-in per session (site)
        return Reason.ALREADY_USED
    if site.capacity is not None and view.occupancy(site.number) >= site.capacity:
        return Reason.SITE_FULL
    return TapKind.ENTRY, persons, flags


def is_open(site: SiteSettings, now: int) -> bool:
    """Whether ``site`` is open at Unix time ``now`` (its hours are local; closing may pass midnight)."""
    if site.opens is None or site.closes is None:
        return True
    minute = ((now + site.utc_offset_minutes * 60) // 60) % 1440
    opens = int(site.opens[:2]) * 60 + int(site.opens[3:])
    closes = int(site.closes[:2]) * 60 + int(site.closes[3:])
    if opens <= closes:
        return opens <= minute < closes
    return minute >= opens or minute < closes


def usage_after(decision: Decision, usage: Usage, site: int) -> Usage:
    """The usage a ledger stores after recording an allowed ``decision`` (pure)."""
    if not decision.allowed:
        return usage
    now = decision.effective_now
    if decision.kind is TapKind.ENTRY:
        return replace(usage, persons_used=usage.persons_used + decision.persons, last_entry_at=now)
    if decision.kind is TapKind.TAP_IN:
        return replace(usage, tapped_in_at=now, tapped_in_site=site)
    if decision.kind is TapKind.TAP_OUT:
        return replace(usage, tapped_in_at=None, tapped_in_site=None)
    return usage
