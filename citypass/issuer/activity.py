"""Gate activity: what each gate did in a window — taps, admissions, refusals by reason.

This is the operator's tally sheet ("taps per gate, denials by reason") and the proof that the
exactly-once pipeline held: each tap a gate recorded is counted once, in exactly one row, whatever the
uploads looked like. Two invariants hold for every row, and the tests check them:

* ``taps == allowed + denied`` and ``denied == sum(denials.values())`` — every tap lands in one bucket;
* ``0 <= annulled <= persons`` — persons given back never exceed persons admitted; the persons who
  really passed are ``persons - annulled``.

So comparing a gate's own count of recorded taps with its row here shows at once whether a tap was lost
(the row is short) or counted twice (it cannot be: see below).

:func:`gate_activity` is pure and a function of the **set** of taps, like everything in
:mod:`citypass.issuer.reconcile`: it first keeps one record per tap id
(:func:`~citypass.issuer.tap_records.unique_taps`), so a retried upload, a replayed backlog, or two gates' offline
weeks arriving interleaved give the same rows as a perfect feed. Counting the raw input instead would turn every lost
acknowledgement into a phantom tap.

One row per ``(gate_id, site, direction)``, sorted that way — a gate that was moved to another site or
turned round during the window shows one row per configuration rather than mixing them, and no tap is
hidden. ``first_at``/``last_at`` span the row's taps (gate decision times, Unix s).

    >>> from citypass.issuer.tap_records import TapRecord
    >>> def tap(tap_id, gate, decision="allow", reason=None, persons=1, annulled=0, at=1_800_000_000):
    ...     allowed = decision == "allow"
    ...     return TapRecord(tap_id=tap_id, gate_id=gate, site=1, direction="entry", decision=decision,
    ...                      reason=reason, flags=(), credential_id="c1" if allowed else None, product=None,
    ...                      persons=persons, kind="entry" if allowed else None, presentation_id=None, at=at,
    ...                      annulled=annulled)
    >>> feed = [tap("t1", "lake-in", persons=3, annulled=1),
    ...         tap("t2", "lake-in", "deny", "expired", persons=0, at=1_800_000_060), tap("t3", "lake-in-2")]
    >>> [a.to_dict() for a in gate_activity(feed + feed)][0]   # the duplicate upload changes nothing
    {'gate_id': 'lake-in', 'site': 1, 'direction': 'entry', 'taps': 2, 'allowed': 1, 'denied': 1, 'persons': 3,
     'annulled': 1, 'denials': {'expired': 1}, 'first_at': 1800000000, 'last_at': 1800000060}
    >>> [(a.gate_id, a.taps) for a in gate_activity(feed)]
    [('lake-in', 2), ('lake-in-2', 1)]
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from citypass.issuer.tap_records import TapRecord, unique_taps


@dataclass(frozen=True)
class GateActivity:
    """One gate's taps in the window. ``persons`` is the persons its allowed taps admitted (a group tap
    counts its party), ``annulled`` how many of them the barrier gave back because they never passed;
    ``denials`` maps each deny reason to its count, keys sorted."""

    gate_id: str
    site: int
    direction: str
    taps: int
    allowed: int
    denied: int
    persons: int
    annulled: int
    denials: dict[str, int] = field(hash=False)  # a dict cannot be hashed: hash() leaves it out
    first_at: int
    last_at: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``denials`` a plain dict with sorted keys)."""
        return {
            "gate_id": self.gate_id, "site": self.site, "direction": self.direction, "taps": self.taps,
            "allowed": self.allowed, "denied": self.denied, "persons": self.persons, "annulled": self.annulled,
            "denials": dict(sorted(self.denials.items())), "first_at": self.first_at, "last_at": self.last_at,
        }


def gate_activity(taps: Iterable[TapRecord]) -> list[GateActivity]:
    """Per-gate tallies of ``taps`` (duplicates removed first), one per ``(gate_id, site, direction)``,
    sorted that way. No taps, no rows: a gate that recorded nothing in the window is not listed."""
    groups: dict[tuple[str, int, str], list[TapRecord]] = defaultdict(list)
    for tap in unique_taps(taps):  # in (at, tap_id) order, so each group is too
        groups[(tap.gate_id, tap.site, tap.direction)].append(tap)
    return [_tally(key, groups[key]) for key in sorted(groups)]


def _tally(key: tuple[str, int, str], taps: list[TapRecord]) -> GateActivity:
    allowed = [t for t in taps if t.allowed]
    reasons = Counter(t.reason for t in taps if not t.allowed and t.reason is not None)
    return GateActivity(
        gate_id=key[0], site=key[1], direction=key[2], taps=len(taps), allowed=len(allowed),
        denied=len(taps) - len(allowed), persons=sum(t.persons for t in allowed),
        annulled=sum(t.annulled for t in allowed), denials=dict(sorted(reasons.items())),
        first_at=taps[0].at, last_at=taps[-1].at,
    )
