"""Taps as the issuer sees them: one validated :class:`TapRecord` per tap id, annulments applied.

A gate records every decision as a ``tap`` outbox event (the body is ``Tap.event_fields()`` from
gate/ledger/taps.py plus ``event_id``, ``kind`` and ``tap_id``) and later facts about it as ``annul``,
``passage`` and ``stage`` events. Delivery is *at least once*: after a lost acknowledgement, a restart or
a week in a tunnel the same event arrives again, in any order relative to other gates' events. Exactly-once
accounting is therefore the issuer's job, and it rests on two rules that every function in
:mod:`citypass.issuer.reconcile` follows:

* **a tap is identified by its tap id** — :func:`unique_taps` keeps one record per id, whatever order
  and however many copies arrive, and picks the same copy every time;
* **nothing depends on arrival order** — reconciliation sorts by ``(at, tap_id)`` before it walks time.

The storage layer turns events into records: ``TapRecord.from_event(tap_id, body, annulled)``, with
``annulled`` the ``persons_unused`` of the tap's ``annul`` event (a gate annuls a tap at most once).

    >>> body = {"gate_id": "g1", "site": 3, "direction": "entry", "decision": "allow", "reason": None,
    ...         "flags": [], "credential_id": "AB12", "product": 2, "persons": 2, "kind": "entry",
    ...         "presentation_id": None, "at": 1_800_000_000, "stages": {"decided": 1.8e9}}
    >>> tap = TapRecord.from_event("t1", body, annulled=1)
    >>> (tap.credential_id, tap.persons, tap.net_persons)
    ('ab12', 2, 1)
    >>> len(unique_taps([tap, tap]))
    1

Note on ``kind``: in a gate's outbox body the tap's own fields are spread over the envelope, so for a
``tap`` event ``body["kind"]`` is the *tap kind* (``"entry"`` … ``"tap"``, or null for a denial), never the
event kind. The event kind is the outbox row's ``kind`` column (what the sync layer sends alongside).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass
from typing import Any, TypeGuard

from citypass.errors import InvalidInput

#: Tap kinds a gate records on an allowed decision (the values of ``citypass.gate.decision.TapKind``; repeated here
#: because the issuer must not import the gate, and a test keeps the two in step).
ENTRY, EXIT, TAP_IN, TAP_OUT, TAP = "entry", "exit", "tap_in", "tap_out", "tap"
KINDS = (ENTRY, EXIT, TAP_IN, TAP_OUT, TAP)
DIRECTIONS = ("entry", "exit")
DECISIONS = ("allow", "deny")

#: Product numbers (``citypass.credential.claims.Product``) the reconciliation treats specially.
ANNUAL, RESERVATION, TRANSIT, GROUP = 1, 2, 3, 4

_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # reason codes: snake_case, new ones may appear any day
_HEX = re.compile(r"^(?:[0-9a-f]{2}){1,64}$")


@dataclass(frozen=True)
class TapRecord:
    """One ingested tap. ``at`` is the gate's effective decision time (Unix s); ``annulled`` is how many
    of its ``persons`` the barrier gave back because they never passed; ``received_at`` is when the issuer
    first stored it (None when unknown).

    Construction validates every field (ValueError), so a record that exists is one the reconciliation
    can trust: an allowed tap has a kind, a credential and at least one person; a denied tap has a reason
    and no persons.
    """

    tap_id: str
    gate_id: str
    site: int
    direction: str
    decision: str
    reason: str | None
    flags: tuple[str, ...]
    credential_id: str | None
    product: int | None
    persons: int
    kind: str | None
    presentation_id: str | None
    at: int
    annulled: int = 0
    received_at: int | None = None

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise InvalidInput(f"tap {self.tap_id!r}: {problem}")

    @classmethod
    def stored(cls, tap_id: str, gate_id: str, site: int, direction: str, decision: str, reason: str | None,
               flags: tuple[str, ...], credential_id: str | None, product: int | None, persons: int,
               kind: str | None, presentation_id: str | None, at: int, annulled: int,
               received_at: int | None) -> TapRecord:
        """A record read back from the issuer's own store, built without validating it again: every stored tap
        was validated by :meth:`from_event` before ingest stored it, and the store's columns keep their types.
        (Ingest reads a credential's taps back after every batch; checking each of them again was a sixth of
        its Python time.) Anything from outside the store goes through the constructor.

            >>> t = TapRecord.stored("t1", "g", 1, "entry", "allow", None, (), "ab", 1, 1, "entry", None, 5, 0, None)
            >>> t == TapRecord("t1", "g", 1, "entry", "allow", None, (), "ab", 1, 1, "entry", None, 5)
            True
        """
        tap = object.__new__(cls)
        tap.__dict__.update(tap_id=tap_id, gate_id=gate_id, site=site, direction=direction, decision=decision,
                            reason=reason, flags=flags, credential_id=credential_id, product=product,
                            persons=persons, kind=kind, presentation_id=presentation_id, at=at, annulled=annulled,
                            received_at=received_at)
        return tap

    def _problem(self) -> str | None:
        if not isinstance(self.tap_id, str) or not 0 < len(self.tap_id) <= 64:
            return "tap_id must be a string of 1..64 characters"
        if not isinstance(self.gate_id, str) or not 0 < len(self.gate_id) <= 64:
            return "gate_id must be a string of 1..64 characters"
        for name in ("site", "persons", "at", "annulled"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                return f"{name} must be a non-negative integer, not {getattr(self, name)!r}"
        if self.direction not in DIRECTIONS:
            return f"direction must be one of {DIRECTIONS}, not {self.direction!r}"
        if self.decision not in DECISIONS:
            return f"decision must be one of {DECISIONS}, not {self.decision!r}"
        if self.reason is not None and (not isinstance(self.reason, str) or not _CODE.match(self.reason)):
            return f"reason must be a snake_case code or null, not {self.reason!r}"
        if not isinstance(self.flags, tuple) or not all(isinstance(f, str) and _CODE.match(f) for f in self.flags):
            return f"flags must be a tuple of snake_case codes, not {self.flags!r}"
        for name in ("credential_id", "presentation_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _HEX.match(value)):
                return f"{name} must be lowercase hex or null, not {value!r}"
        if self.product is not None and (not _is_int(self.product) or self.product < 1):
            return f"product must be a positive integer or null, not {self.product!r}"
        if self.kind is not None and self.kind not in KINDS:
            return f"kind must be one of {KINDS} or null, not {self.kind!r}"
        if self.received_at is not None and not _is_int(self.received_at):
            return f"received_at must be an integer or null, not {self.received_at!r}"
        if self.allowed:
            if self.kind is None or self.credential_id is None or self.persons < 1:
                return "an allowed tap needs a kind, a credential_id and at least one person"
            if self.reason is not None:
                return f"an allowed tap has no reason (flags carry its warnings), not {self.reason!r}"
        elif self.reason is None or self.persons or self.kind is not None or self.annulled:
            return "a denied tap needs a reason, and has no kind, no persons and nothing to annul"
        if self.annulled > self.persons:
            return f"annulled ({self.annulled}) exceeds persons ({self.persons})"
        return None

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    @property
    def net_persons(self) -> int:
        """Persons this tap really let through: granted minus annulled (0 for a denial)."""
        return self.persons - self.annulled

    @property
    def order(self) -> tuple[int, str]:
        """The sort key every reconciliation uses: time, then tap id for a deterministic tie-break."""
        return (self.at, self.tap_id)

    @classmethod
    def from_event(cls, tap_id: str, body: Mapping[str, Any], annulled: int = 0, *,
                   received_at: int | None = None) -> TapRecord:
        """Build a record from a ``tap`` event body (JSON-decoded). Unknown keys (``event_id``,
        ``stages``…) are ignored; a ``tap_id`` in the body must match ``tap_id``. Hex ids are lowercased.
        Raises ValueError naming the first bad field."""
        if not isinstance(body, Mapping):
            raise InvalidInput(f"tap {tap_id!r}: the event body must be a JSON object, not {type(body).__name__}")
        if "tap_id" in body and body["tap_id"] != tap_id:
            raise InvalidInput(f"tap {tap_id!r}: the body names another tap ({body['tap_id']!r})")
        missing = [k for k in ("gate_id", "site", "direction", "decision", "persons", "at") if k not in body]
        if missing:
            raise InvalidInput(f"tap {tap_id!r}: missing field(s) {', '.join(missing)}")
        flags = body.get("flags", [])
        if not isinstance(flags, list | tuple):
            raise InvalidInput(f"tap {tap_id!r}: flags must be a list, not {flags!r}")
        return cls(
            tap_id=tap_id, gate_id=body["gate_id"], site=body["site"], direction=body["direction"],
            decision=body["decision"], reason=body.get("reason"), flags=tuple(flags),
            credential_id=_lower(body.get("credential_id")), product=body.get("product"),
            persons=body["persons"], kind=body.get("kind"), presentation_id=_lower(body.get("presentation_id")),
            at=body["at"], annulled=annulled, received_at=received_at,
        )


def unique_taps(taps: Iterable[TapRecord]) -> list[TapRecord]:
    """One record per tap id, sorted by ``(at, tap_id)``.

    Copies of one tap should be identical. If they are not (a copy read before its annulment was
    applied, say), the choice must still not depend on arrival order: the copy with the most persons
    annulled wins (an annulment is the only later fact that changes what a tap counts), then the one
    received first, then a fixed order over all fields.
    """
    best: dict[str, TapRecord] = {}
    for tap in taps:
        kept = best.get(tap.tap_id)
        if kept is None or _preference(tap) > _preference(kept):
            best[tap.tap_id] = tap
    return sorted(best.values(), key=lambda t: t.order)


def _preference(tap: TapRecord) -> tuple[int, int, str]:
    received = -tap.received_at if tap.received_at is not None else -(2**63)
    return (tap.annulled, received, repr(astuple(tap)))


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value
