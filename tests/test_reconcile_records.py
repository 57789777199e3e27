"""Tap records: built from the exact bodies gates upload, malformed bodies refused, one record per tap id."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citypass.credential.reasons import Reason
from citypass.gate.ledger.taps import Tap
from citypass.gate.policy import Direction, TapKind
from citypass.issuer.reconcile import KINDS, TapRecord, unique_taps
from tests.helpers.reconcile import local, tap

AT = local(10)


def uploaded_body(gate_tap: Tap) -> dict[str, Any]:
    """What the issuer receives: the outbox body as gate/ledger/outbox.add_event writes it, via JSON."""
    envelope = {"event_id": "e-1", "kind": "tap", "tap_id": gate_tap.tap_id, **gate_tap.event_fields()}
    decoded: dict[str, Any] = json.loads(json.dumps(envelope, separators=(",", ":"), sort_keys=True))
    return decoded


def gate_tap(**changes: Any) -> Tap:
    fields: dict[str, Any] = dict(
        tap_id="t-1", seq=7, gate_id="museum-e1", site=12, direction=Direction.ENTRY, allowed=True, reason=None,
        flags=(Reason.LEDGER_STALE,), credential_id=bytes.fromhex("00ff10"), product=2, persons=3,
        kind=TapKind.ENTRY, presentation_id=bytes.fromhex("abcd"), at=AT, stages={"decided": AT + 0.01},
    )
    return Tap(**(fields | changes))


def test_a_gates_own_tap_event_becomes_the_same_record() -> None:
    record = TapRecord.from_event("t-1", uploaded_body(gate_tap()), annulled=1, received_at=AT + 5)
    assert record == TapRecord(
        tap_id="t-1", gate_id="museum-e1", site=12, direction="entry", decision="allow", reason=None,
        flags=("ledger_stale",), credential_id="00ff10", product=2, persons=3, kind="entry",
        presentation_id="abcd", at=AT, annulled=1, received_at=AT + 5,
    )
    assert record.net_persons == 2 and record.allowed


def test_a_gates_denial_becomes_a_denied_record() -> None:
    body = uploaded_body(gate_tap(allowed=False, reason=Reason.BAD_SIGNATURE, flags=(), persons=0, kind=None))
    record = TapRecord.from_event("t-1", body)
    assert (record.decision, record.reason, record.kind, record.net_persons) == ("deny", "bad_signature", None, 0)


def test_record_kinds_are_the_gates_tap_kinds() -> None:
    assert set(KINDS) == {k.value for k in TapKind}


def test_hex_ids_are_lowercased() -> None:
    body = uploaded_body(gate_tap()) | {"credential_id": "00FF10", "presentation_id": "ABCD"}
    record = TapRecord.from_event("t-1", body)
    assert (record.credential_id, record.presentation_id) == ("00ff10", "abcd")


GOOD = uploaded_body(gate_tap())


@pytest.mark.parametrize("change, message", [
    ({"site": "12"}, "site must be a non-negative integer"),
    ({"site": -1}, "site must be a non-negative integer"),
    ({"at": 1.5}, "at must be a non-negative integer"),
    ({"persons": True}, "persons must be a non-negative integer"),
    ({"direction": "sideways"}, "direction must be one of"),
    ({"decision": "maybe"}, "decision must be one of"),
    ({"kind": "teleport"}, "kind must be one of"),
    ({"reason": "Bad Signature"}, "reason must be a snake_case code"),
    ({"reason": "bad_signature"}, "an allowed tap has no reason"),
    ({"flags": "passback"}, "flags must be a list"),
    ({"flags": ["Passback!"]}, "flags must be a tuple of snake_case codes"),
    ({"credential_id": "xyz"}, "credential_id must be lowercase hex"),
    ({"credential_id": None}, "an allowed tap needs a kind, a credential_id"),
    ({"product": 0}, "product must be a positive integer"),
    ({"persons": 0}, "an allowed tap needs a kind, a credential_id and at least one person"),
    ({"gate_id": ""}, "gate_id must be a string"),
    ({"tap_id": "t-2"}, "the body names another tap"),
    ({"decision": "deny"}, "a denied tap needs a reason"),
    ({"decision": "deny", "reason": "revoked"}, "has no kind, no persons"),
])
def test_malformed_bodies_are_refused_with_the_field_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TapRecord.from_event("t-1", GOOD | change)


@pytest.mark.parametrize("missing", ["gate_id", "site", "direction", "decision", "persons", "at"])
def test_missing_fields_are_named(missing: str) -> None:
    body = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ValueError, match=f"missing field\\(s\\) {missing}"):
        TapRecord.from_event("t-1", body)


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        TapRecord.from_event("t-1", [1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("annulled", [-1, 4])
def test_annulled_must_fit_the_persons_granted(annulled: int) -> None:
    with pytest.raises(ValueError, match="annulled"):
        TapRecord.from_event("t-1", GOOD, annulled=annulled)


def test_unique_taps_keeps_one_record_per_id_in_time_order() -> None:
    a, b, c = tap("a", at=AT + 20), tap("b", at=AT), tap("c", at=AT)
    assert [t.tap_id for t in unique_taps([a, b, a, c, b, a])] == ["b", "c", "a"]


def test_differing_copies_resolve_the_same_way_in_any_order() -> None:
    before = tap("a", persons=3)
    annulled = tap("a", persons=3, annulled=2)
    assert unique_taps([before, annulled]) == unique_taps([annulled, before]) == [annulled]
    first = TapRecord(**(vars(before) | {"received_at": 100}))
    later = TapRecord(**(vars(before) | {"received_at": 200}))
    assert unique_taps([later, first]) == unique_taps([first, later]) == [first]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*GOOD, "extra"]), JSON, max_size=len(GOOD) + 1), st.booleans())
def test_any_json_body_is_a_record_or_a_value_error(fields: dict[str, Any], over_good: bool) -> None:
    """Hostile uploads: whatever the JSON, ingest gets a valid record or a ValueError, nothing else."""
    body = GOOD | fields if over_good else fields
    try:
        record = TapRecord.from_event("t-1", body)
    except ValueError:
        return
    assert record.net_persons >= 0 and record.tap_id == "t-1"
