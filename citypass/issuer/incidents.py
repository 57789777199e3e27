"""Incidents: what the issuer's collection of taps says went wrong, for an operator to look at.

A gate decides alone, often offline, so some misuse is only visible centrally, once taps from several
gates meet: a museum reservation admitted at two entrances that were both cut off, an annual pass that
enters two scenic spots three minutes apart. Other incidents are single gates reporting attempts they
already refused (forged, replayed or revoked codes), collected so that a pattern stands out.

:func:`find_incidents` is pure and deterministic: the same taps, in any order and with any number of
duplicates, give the same incidents with the same ids. An incident's id is derived from its kind and
its tap ids, so an incident that grows (a late tap arrives) gets a new id, and one that is unchanged
keeps its id across runs.

Kinds (stable codes, like deny reasons):

=====================  ==========================================================================
``double_use``         a reservation/group credential admitted more persons in total than its party
``passback_flagged``   soft anti-passback: re-entry inside the window, allowed and flagged
``passback_denied``    hard anti-passback refusals: the pass is probably being handed back
``forged_code``        unknown key, bad (holder) signature, key out of scope
``replayed_code``      a dynamic code shown again, or shown after its freshness window
``revoked_presented``  a revoked credential or a phone reported lost was shown
``clock_untrusted``    a gate decided with its clock behind the ledger's time floor
``shared_pass``        an annual/transit pass admitted at two places too close in time to travel
=====================  ==========================================================================

Single-gate reports (all but ``double_use`` and ``shared_pass``) are grouped: taps of the same kind and
credential (for ``clock_untrusted``: the same gate) at most ``group_window_s`` apart form one incident.

    >>> incidents = find_incidents(taps, party_of=store.party_size)   # doctest: +SKIP
    >>> [(i.kind, i.gate_ids) for i in incidents]                      # doctest: +SKIP
    [('double_use', ('museum-e1', 'museum-e2'))]
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from citypass.issuer.tap_records import (
    ANNUAL,
    ENTRY,
    EXIT,
    GROUP,
    RESERVATION,
    TAP_IN,
    TAP_OUT,
    TRANSIT,
    TapRecord,
    unique_taps,
)

FORGED_REASONS = frozenset({"unknown_key", "bad_signature", "bad_holder_signature", "key_out_of_scope"})
REPLAYED_REASONS = frozenset({"replayed_presentation", "presentation_expired"})
REVOKED_REASONS = frozenset({"revoked", "holder_revoked"})
SINGLE_USE_PRODUCTS = frozenset({RESERVATION, GROUP})
SHAREABLE_PRODUCTS = frozenset({ANNUAL, TRANSIT})
#: Lanes of one site share admissions within a fraction of a second (docs/gate.md, "One site, one gate"; tap
#: times are whole seconds): two admissions at one site at most this far apart are a race inside that window;
#: further apart, a lane that could not hear its siblings (cut off from them, or at a site whose lanes do not share).
LANE_RACE_S = 1
#: Sites allow at most 1440 passback minutes, so an entry older than a day cannot be what a gate's
#: passback check saw; it is not shown as the "previous entry" of a passback incident.
PASSBACK_LOOKBACK_S = 1440 * 60


@dataclass(frozen=True)
class Incident:
    """One thing an operator should look at. ``tap_ids`` are in time order; ``gate_ids`` and ``sites``
    are sorted and distinct; ``first_at``/``last_at`` span the taps; ``detail`` is one English sentence."""

    kind: str
    credential_id: str | None
    tap_ids: tuple[str, ...]
    gate_ids: tuple[str, ...]
    sites: tuple[int, ...]
    first_at: int
    last_at: int
    detail: str

    @property
    def incident_id(self) -> str:
        """``<kind>-<24 hex>``: a hash of the kind and the sorted tap ids, stable across runs."""
        text = "\n".join([self.kind, *sorted(self.tap_ids)])
        return f"{self.kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, id included."""
        return {
            "incident_id": self.incident_id, "kind": self.kind, "credential_id": self.credential_id,
            "tap_ids": list(self.tap_ids), "gate_ids": list(self.gate_ids), "sites": list(self.sites),
            "first_at": self.first_at, "last_at": self.last_at, "detail": self.detail,
        }


def find_incidents(taps: Iterable[TapRecord], party_of: Callable[[str], int | None], *,
                   shared_pass_window_s: int = 600, group_window_s: int = 3600) -> list[Incident]:
    """Every incident in ``taps``, sorted by ``(first_at, kind, incident_id)``.

    ``party_of(credential_id)`` gives the party size the issuer issued a reservation or group ticket
    for (None if unknown); it is called once per single-use credential that was admitted.
    ``shared_pass_window_s``: two admissions at different places closer than this are not one person.
    ``group_window_s``: repeated single-gate reports this close together are one incident.
    """
    if shared_pass_window_s < 0 or group_window_s < 0:
        raise ValueError("windows must not be negative")
    records = unique_taps(taps)
    found = [
        *_double_use(records, party_of),
        *_passback(records, group_window_s),
        *_refused_codes(records, group_window_s),
        *_grouped("clock_untrusted", [t for t in records if _clock_untrusted(t)], lambda t: t.gate_id,
                  group_window_s, _describe_clock, about_credential=False),
        *_shared_pass(records, shared_pass_window_s),
    ]
    return sorted(found, key=lambda i: (i.first_at, i.kind, i.incident_id))


# -- building blocks ------------------------------------------------------------------------------
def _incident(kind: str, credential_id: str | None, taps: Sequence[TapRecord], detail: str) -> Incident:
    ordered = sorted(taps, key=lambda t: t.order)
    return Incident(
        kind=kind, credential_id=credential_id, tap_ids=tuple(t.tap_id for t in ordered),
        gate_ids=tuple(sorted({t.gate_id for t in ordered})), sites=tuple(sorted({t.site for t in ordered})),
        first_at=ordered[0].at, last_at=ordered[-1].at, detail=detail,
    )


def _bursts(taps: Sequence[TapRecord], gap_s: int) -> Iterator[list[TapRecord]]:
    """Split time-ordered ``taps`` wherever two neighbours are more than ``gap_s`` apart."""
    burst: list[TapRecord] = []
    for tap in taps:
        if burst and tap.at - burst[-1].at > gap_s:
            yield burst
            burst = []
        burst.append(tap)
    if burst:
        yield burst


def _grouped(kind: str, taps: Iterable[TapRecord], key: Callable[[TapRecord], str], gap_s: int,
             describe: Callable[[list[TapRecord]], str], *, about_credential: bool = True) -> Iterator[Incident]:
    """Incidents from taps grouped by ``key``, one per burst. ``about_credential`` False: the group is a
    gate's, and the incident names no credential (its taps may carry many)."""
    groups: dict[str, list[TapRecord]] = defaultdict(list)
    for tap in taps:  # already in time order: unique_taps sorts
        groups[key(tap)].append(tap)
    for name in sorted(groups):
        for burst in _bursts(groups[name], gap_s):
            yield _incident(kind, burst[0].credential_id if about_credential else None, burst, describe(burst))


def _gates(taps: Iterable[TapRecord]) -> str:
    return ", ".join(sorted({t.gate_id for t in taps}))


def _times(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


# -- double use -----------------------------------------------------------------------------------
def _double_use(records: Sequence[TapRecord], party_of: Callable[[str], int | None]) -> Iterator[Incident]:
    entries: dict[str, list[TapRecord]] = defaultdict(list)
    for tap in records:
        if tap.allowed and tap.kind == ENTRY and tap.product in SINGLE_USE_PRODUCTS and tap.credential_id:
            entries[tap.credential_id].append(tap)
    for credential_id in sorted(entries):
        taps = entries[credential_id]
        used = [t for t in taps if t.net_persons > 0]
        total = sum(t.net_persons for t in used)
        party = party_of(credential_id)
        if party is not None and (isinstance(party, bool) or not isinstance(party, int) or party < 1):
            raise ValueError(f"party_of({credential_id!r}) returned {party!r}: a party size is 1 or more")
        inferred = ""
        if party is None:
            # A gate's first admission of a party ticket grants every person it has not seen used, and
            # gates do not share usage, so the largest single grant is the party size.
            party = max(t.persons for t in taps)
            inferred = " (party size unknown to the issuer: inferred from the largest single grant)"
        if total > party:
            split = " + ".join(f"{t.net_persons} at {t.gate_id}" for t in used)
            yield _incident("double_use", credential_id, used,
                            f"{total} persons admitted on a party of {party}{inferred}: {split}{_lanes(used)}")


def _lanes(used: Sequence[TapRecord]) -> str:
    """What a double use at several lanes of one site says about the lanes' sharing."""
    if len({t.site for t in used}) != 1 or len({t.gate_id for t in used}) < 2:
        return ""
    ordered = sorted(used, key=lambda t: t.order)
    gap = min(b.at - a.at for a, b in itertools.pairwise(ordered) if a.gate_id != b.gate_id)
    why = ("lanes racing inside their sharing window" if gap <= LANE_RACE_S
           else "a lane that could not hear its siblings (cut off from them, or lanes that do not share)")
    return f"; lanes of one site {gap} s apart: {why}"


# -- anti-passback --------------------------------------------------------------------------------
def _passback(records: Sequence[TapRecord], gap_s: int) -> Iterator[Incident]:
    entries: dict[tuple[str, int], list[TapRecord]] = defaultdict(list)
    flagged: dict[tuple[str, int], list[TapRecord]] = defaultdict(list)
    denied: dict[tuple[str, int], list[TapRecord]] = defaultdict(list)
    for tap in records:
        if tap.credential_id is None:
            continue
        key = (tap.credential_id, tap.site)
        if tap.allowed and tap.kind == ENTRY and tap.net_persons > 0:
            entries[key].append(tap)
            if "passback" in tap.flags:
                flagged[key].append(tap)
        elif not tap.allowed and tap.reason == "passback":
            denied[key].append(tap)
    for kind, groups in (("passback_flagged", flagged), ("passback_denied", denied)):
        for key in sorted(groups):
            for burst in _bursts(groups[key], gap_s):
                before = [e for e in entries[key] if e.order < burst[0].order
                          and burst[0].at - e.at < PASSBACK_LOOKBACK_S]
                context = before[-1:]  # the entry the gate's passback check most likely saw
                yield _incident(kind, key[0], context + burst, _describe_passback(kind, key[1], burst, context))


def _describe_passback(kind: str, site: int, burst: list[TapRecord], context: list[TapRecord]) -> str:
    if kind == "passback_flagged":
        text = f"{_times(len(burst), 're-entry')} at site {site} inside the anti-passback window (allowed, flagged)"
    else:
        text = f"{_times(len(burst), 'entry')} refused by anti-passback at site {site}: the pass may be shared"
    if context:
        text += f"; previous entry at {context[0].gate_id}, {burst[0].at - context[0].at} s before"
    return text


# -- refused codes and clock trouble --------------------------------------------------------------
def _refused_codes(records: Sequence[TapRecord], gap_s: int) -> Iterator[Incident]:
    def key(tap: TapRecord) -> str:  # an unparsable forged code has no id: group it by the gate instead
        return tap.credential_id or f"gate:{tap.gate_id}"

    for kind, reasons, what in (("forged_code", FORGED_REASONS, "forged or foreign code"),
                                ("replayed_code", REPLAYED_REASONS, "replayed or stale dynamic code"),
                                ("revoked_presented", REVOKED_REASONS, "revoked credential or lost phone")):
        refused = [t for t in records if not t.allowed and t.reason in reasons]

        def describe(burst: list[TapRecord], what: str = what) -> str:
            codes = ", ".join(sorted({t.reason or "" for t in burst}))
            return f"{_times(len(burst), 'attempt')} with a {what} ({codes}) at {_gates(burst)}"

        yield from _grouped(kind, refused, key, gap_s, describe)


def _clock_untrusted(tap: TapRecord) -> bool:
    return "clock_untrusted" in tap.flags or tap.reason == "clock_untrusted"


def _describe_clock(burst: list[TapRecord]) -> str:
    return (f"gate {burst[0].gate_id} decided {_times(len(burst), 'tap')} with its clock behind the ledger's "
            "time floor; their times are that floor, not the true time")


# -- shared passes --------------------------------------------------------------------------------
def _shared_pass(records: Sequence[TapRecord], window_s: int) -> Iterator[Incident]:
    """Runs of admissions (``entry``, ``tap_in``) of one annual/transit pass at different places, each
    less than ``window_s`` after the previous one, with no departure in between that explains the move.

    A departure explains a move when it leaves the place of the previous admission (an ``exit`` there),
    or ends the metro ride that admission began (any ``tap_out``: the train did the travelling). Bus and
    water-bus taps are left out: a reader on a vehicle has no fixed place. Taps decided on an untrusted
    clock are left out too: their time is the gate's floor, not when they happened.
    """
    trails: dict[str, list[TapRecord]] = defaultdict(list)
    for tap in records:
        if (tap.allowed and tap.product in SHAREABLE_PRODUCTS and tap.credential_id and tap.net_persons > 0
                and tap.kind in (ENTRY, EXIT, TAP_IN, TAP_OUT) and not _clock_untrusted(tap)):
            trails[tap.credential_id].append(tap)
    for credential_id in sorted(trails):
        runs: list[list[TapRecord]] = []
        last: TapRecord | None = None
        departed = False
        for tap in trails[credential_id]:
            if tap.kind in (EXIT, TAP_OUT):
                if last is not None and (tap.site == last.site or (last.kind == TAP_IN and tap.kind == TAP_OUT)):
                    departed = True
                continue
            if last is not None and not departed and tap.site != last.site and tap.at - last.at < window_s:
                if runs and runs[-1][-1] is last:
                    runs[-1].append(tap)
                else:
                    runs.append([last, tap])
            last, departed = tap, False
        for run in runs:
            gap = min(b.at - a.at for a, b in itertools.pairwise(run))
            sites = ", ".join(str(s) for s in sorted({t.site for t in run}))
            yield _incident("shared_pass", credential_id, run,
                            f"{len(run)} admissions at sites {sites}, as little as {gap} s apart (less than "
                            f"{window_s} s to travel between places): the pass is likely shared")
