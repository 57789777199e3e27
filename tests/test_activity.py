"""Gate activity: taps per gate, denials by reason, persons admitted and given back — each tap counted once
however the uploads arrived; and ``GET /v1/activity`` over a served issuer."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from citypass.issuer.reconcile import GateActivity, TapRecord, gate_activity
from citypass.issuer.testing import ServedIssuer, served_issuer
from tests.helpers.reconcile import GROUP, deny, local, tap

TAPS = [
    tap("a1", gate="lake-in", at=local(9, 0), persons=1),
    tap("a2", gate="lake-in", at=local(9, 5), persons=4, annulled=1, product=GROUP),  # one of the party never passed
    deny("a3", "expired", gate="lake-in", at=local(9, 10)),
    deny("a4", "passback", gate="lake-in", at=local(9, 20)),
    deny("a5", "expired", gate="lake-in", at=local(9, 30)),
    tap("b1", gate="lake-out", kind="exit", at=local(10, 0), cred="c2"),
    tap("b2", gate="lake-out", kind="exit", at=local(10, 1), cred="c3", annulled=1),
    deny("m1", "unknown_key", gate="museum-a", site=3, at=local(11, 0), cred=None, product=None),
]


def _by_gate(rows: list[GateActivity]) -> dict[str, GateActivity]:
    return {row.gate_id: row for row in rows}


def test_counts_per_gate_with_denials_by_reason_and_annulled_persons() -> None:
    rows = gate_activity(TAPS)
    assert [r.gate_id for r in rows] == ["lake-in", "lake-out", "museum-a"]
    lake_in, lake_out, museum = rows
    assert lake_in == GateActivity(gate_id="lake-in", site=1, direction="entry", taps=5, allowed=2, denied=3,
                                   persons=5, annulled=1, denials={"expired": 2, "passback": 1},
                                   first_at=local(9, 0), last_at=local(9, 30))
    assert (lake_out.direction, lake_out.taps, lake_out.allowed, lake_out.persons, lake_out.annulled) == (
        "exit", 2, 2, 2, 1)
    assert lake_out.denials == {} and (lake_out.first_at, lake_out.last_at) == (local(10, 0), local(10, 1))
    assert (museum.site, museum.taps, museum.allowed, museum.denied, museum.persons) == (3, 1, 0, 1, 0)
    assert museum.denials == {"unknown_key": 1}


def test_every_tap_lands_in_exactly_one_bucket() -> None:
    rows = gate_activity(TAPS)
    assert sum(r.taps for r in rows) == len(TAPS)
    for row in rows:
        assert row.taps == row.allowed + row.denied and row.denied == sum(row.denials.values())
        assert 0 <= row.annulled <= row.persons and row.first_at <= row.last_at


def test_to_dict_is_json_ready_with_sorted_reasons() -> None:
    row = gate_activity([deny("z", "passback"), deny("y", "expired"), deny("x", "revoked")])[0]
    data = row.to_dict()
    assert list(data) == ["gate_id", "site", "direction", "taps", "allowed", "denied", "persons", "annulled",
                          "denials", "first_at", "last_at"]
    assert list(data["denials"]) == ["expired", "passback", "revoked"]
    assert isinstance(hash(row), int)  # frozen, and hashable although it holds a dict


def test_duplicates_and_shuffles_give_the_same_rows() -> None:
    once = gate_activity(TAPS)
    rng = random.Random(11)
    for _ in range(20):
        feed = TAPS * rng.randint(1, 4) + rng.sample(TAPS, rng.randint(0, len(TAPS)))
        rng.shuffle(feed)
        assert gate_activity(feed) == once
        assert gate_activity(iter(feed)) == once  # any iterable, read once


def test_a_copy_read_before_its_annulment_does_not_hide_it() -> None:
    late = tap("t", persons=3, annulled=2)
    early = tap("t", persons=3, annulled=0)
    assert gate_activity([early, late]) == gate_activity([late, early])
    [row] = gate_activity([early, late])
    assert (row.taps, row.persons, row.annulled) == (1, 3, 2)


def test_empty_input_gives_no_rows() -> None:
    assert gate_activity([]) == []


def test_a_moved_gate_shows_one_row_per_site_and_direction() -> None:
    rows = gate_activity([tap("p", gate="g", site=1), tap("q", gate="g", site=2), tap("r", gate="g", site=1)])
    assert [(r.gate_id, r.site, r.taps) for r in rows] == [("g", 1, 2), ("g", 2, 1)]


# -- GET /v1/activity -----------------------------------------------------------------------------
NOW = 1_800_000_000


def _event(record: TapRecord) -> dict[str, Any]:
    body = {"gate_id": record.gate_id, "site": record.site, "direction": record.direction,
            "decision": record.decision, "reason": record.reason, "flags": list(record.flags),
            "credential_id": record.credential_id, "product": record.product, "persons": record.persons,
            "kind": record.kind, "presentation_id": record.presentation_id, "at": record.at}
    return {"event_id": f"ev-{record.tap_id}", "tap_id": record.tap_id, "kind": "tap", "body": body}


def _annul(record: TapRecord) -> dict[str, Any]:
    return {"event_id": f"an-{record.tap_id}", "tap_id": record.tap_id, "kind": "annul",
            "body": {"persons_unused": record.annulled}}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path / "issuer", now=NOW) as s:
        yield s


def test_activity_endpoint_counts_each_uploaded_tap_once(served: ServedIssuer) -> None:
    lake = [tap("l1", gate="lake-in", at=NOW - 600, persons=4, annulled=1, product=GROUP, cred="g1"),
            tap("l2", gate="lake-in", at=NOW - 500, cred="a1"),
            deny("l3", "expired", gate="lake-in", at=NOW - 400),
            deny("l4", "passback", gate="lake-in", at=NOW - 300),
            deny("l5", "expired", gate="lake-in", at=NOW - 200)]
    museum = [tap("m1", gate="museum-a", site=3, at=NOW - 100, cred="r1", product=2),
              deny("m2", "unknown_key", gate="museum-a", site=3, at=NOW - 50, cred=None, product=None),
              deny("old", "expired", gate="museum-a", site=3, at=NOW - 2 * 86_400)]  # outside the default day
    with served.client("technician") as tech:
        for gate_id, site in (("lake-in", 1), ("museum-a", 3)):
            assert tech.post("/v1/devices", json={"id": gate_id, "site": site}).status_code == 201
    with served.client("admin") as admin:
        for gate_id, records in (("lake-in", lake), ("museum-a", museum)):
            events = [_event(r) for r in records] + [_annul(r) for r in records if r.annulled]
            for batch in (events, events[::-1]):  # a lost acknowledgement: the batch again, in another order
                response = admin.post("/v1/taps", json={"device_id": gate_id, "events": batch})
                assert response.status_code == 200 and response.json()["quarantined"] == [], response.text

    with served.client("operator") as operator:
        response = operator.get("/v1/activity")
        assert response.status_code == 200, response.text
        assert response.json() == [
            {"gate_id": "lake-in", "site": 1, "direction": "entry", "taps": 5, "allowed": 2, "denied": 3,
             "persons": 5, "annulled": 1, "denials": {"expired": 2, "passback": 1},
             "first_at": NOW - 600, "last_at": NOW - 200},
            {"gate_id": "museum-a", "site": 3, "direction": "entry", "taps": 2, "allowed": 1, "denied": 1,
             "persons": 1, "annulled": 0, "denials": {"unknown_key": 1}, "first_at": NOW - 100, "last_at": NOW - 50},
        ]
        [only] = operator.get("/v1/activity", params={"gate_id": "museum-a"}).json()
        assert (only["gate_id"], only["taps"]) == ("museum-a", 2)
        assert [r["gate_id"] for r in operator.get("/v1/activity", params={"site": 1}).json()] == ["lake-in"]
        assert operator.get("/v1/activity", params={"gate_id": "nowhere"}).json() == []
        week = operator.get("/v1/activity", params={"since": NOW - 7 * 86_400, "gate_id": "museum-a"}).json()
        assert week[0]["taps"] == 3 and week[0]["denials"] == {"expired": 1, "unknown_key": 1}
        assert operator.get("/v1/activity", params={"since": NOW - 300, "until": NOW - 250}).json()[0]["taps"] == 1
        for bad in ({"gate_id": "-bad"}, {"site": -1}, {"since": NOW, "until": NOW - 1},
                    {"since": 0, "until": NOW}):
            assert operator.get("/v1/activity", params=bad).status_code == 422, bad
    with served.client("auditor") as auditor:
        assert auditor.get("/v1/activity").status_code == 200
    for role in ("issuer", "technician"):
        with served.client(role) as other:
            assert other.get("/v1/activity").status_code == 403, role
    with served.client() as anonymous:
        assert anonymous.get("/v1/activity").status_code == 401
