"""Tap ingest over HTTP from real gate ledgers (their outbox rows, byte for byte), exactly once, and the
reports built from what was ingested: incidents, occupancy, journeys."""

from __future__ import annotations

import json
import random

import httpx

from citypass.issuer.testing import ServedIssuer
from tests.helpers.issuer_gates import MIDNIGHT, NOW, Gate, gates, served
from tests.helpers.issuer_gates import mint_code as _code

__all__ = ["gates", "served"]  # fixtures


def test_real_outbox_events_are_stored_once_whatever_the_repeats(served: ServedIssuer, gates: dict[str, Gate]) -> None:
    gate = gates["lake-in"]
    codes = [_code(served, product="annual", sites=["west-lake"]) for _ in range(3)]
    taps = [gate.tap(code, NOW + i) for i, code in enumerate(codes)]
    gate.tap("not a city pass code", NOW + 5)
    gate.ledger.annul(taps[0], 1, at=NOW + 9)  # the barrier timed out: nobody passed
    rows = gate.rows()
    assert [r.kind for r in rows].count("annul") == 1 and len(rows) == 5

    first = gate.upload(rows, health={"ledger_seq": gate.ledger.seq, "outbox_backlog": len(rows), "clock": NOW})
    assert first["acknowledged"] == [r.event_id for r in rows]
    assert (first["new_taps"], first["duplicates"], first["quarantined"]) == (4, 0, [])
    assert gate.ledger.backlog() == 0
    again = gate.upload(rows)  # a lost acknowledgement: the same batch once more
    assert (again["new_taps"], again["duplicates"]) == (0, 5) and again["acknowledged"] == first["acknowledged"]
    shuffled = random.Random(7).sample(rows, len(rows))
    assert gate.upload(shuffled + shuffled)["duplicates"] == 5  # repeats inside one batch count once

    stored = {t.tap_id: t for t in served.issuer.store.taps()}
    assert len(stored) == 4 and stored[taps[0]].annulled == 1 and stored[taps[0]].net_persons == 0
    assert {t.decision for t in stored.values()} == {"allow", "deny"}
    with served.client("operator") as operator:
        health = operator.get("/v1/devices/lake-in/health").json()
        assert health["outbox_backlog"] == 5 and health["last_seen"] == NOW and health["ledger_behind"] == 0


def test_out_of_order_annulment_before_its_tap_still_applies_once(served: ServedIssuer,
                                                                  gates: dict[str, Gate]) -> None:
    gate = gates["museum-a"]
    with served.client("issuer") as issuer:
        venue_slot = issuer.post("/v1/venues/zhejiang-museum/slots",
                                 json={"starts_at": NOW, "ends_at": NOW + 7200, "capacity": 10}).json()
        code = issuer.post("/v1/reservations", json={"slot_id": venue_slot["id"], "party": 3}).json()["code"]
    tap_id = gate.tap(code, NOW + 60)
    gate.ledger.annul(tap_id, 2, at=NOW + 80)
    tap_row, annul_row = gate.rows()
    assert (tap_row.kind, annul_row.kind) == ("tap", "annul")
    assert gate.upload([annul_row])["new_taps"] == 0  # the annulment alone: kept, waiting for its tap
    assert served.issuer.store.taps() == []
    assert gate.upload([tap_row])["new_taps"] == 1
    [stored] = served.issuer.store.taps()
    assert (stored.persons, stored.annulled, stored.net_persons) == (3, 2, 1)
    gate.upload([annul_row, tap_row])
    [stored] = served.issuer.store.taps()
    assert stored.annulled == 2


def test_invalid_events_are_quarantined_and_acknowledged(served: ServedIssuer, gates: dict[str, Gate]) -> None:
    gate = gates["lake-in"]
    gate.tap(_code(served, product="annual", sites=["west-lake"]), NOW)
    [good] = gate.rows()
    body = json.loads(good.body)
    bad_events = [
        {"event_id": "bad-1", "tap_id": "t-1", "kind": "tap", "body": {"gate_id": "lake-in"}},
        {"event_id": "bad-2", "tap_id": "t-2", "kind": "tap", "body": {**body, "tap_id": "t-2", "gate_id": "other"}},
        {"event_id": "bad-3", "tap_id": "t-3", "kind": "annul", "body": {"persons_unused": 0}},
        {"event_id": "bad-4", "tap_id": "t-4", "kind": "tap", "body": "not json"},
        {"event_id": "bad-5", "tap_id": "t-5", "kind": "tap", "body": {**body, "tap_id": "t-5", "site": 10**30}},
        {"event_id": "bad-6", "tap_id": "t-6", "kind": "tap", "body": {**body, "tap_id": "t-6", "persons": -1}},
    ]
    good_event = {"event_id": good.event_id, "tap_id": good.tap_id, "kind": good.kind, "body": body}
    with served.client(token=gate.token) as client:
        result = client.post("/v1/taps", json={"events": [*bad_events, good_event]}).json()
        assert result["acknowledged"] == [*(e["event_id"] for e in bad_events), good.event_id]
        assert result["new_taps"] == 1
        quarantined = {q["event_id"]: q["error"] for q in result["quarantined"]}
        assert set(quarantined) == {e["event_id"] for e in bad_events}
        assert "missing field" in quarantined["bad-1"] and "uploading device" in quarantined["bad-2"]
        assert "not valid JSON" in quarantined["bad-4"] and "site" in quarantined["bad-5"]
        again = client.post("/v1/taps", json={"events": bad_events}).json()
        assert again["duplicates"] == len(bad_events) and again["quarantined"] == []
        assert client.post("/v1/taps", json={"events": [], "device_id": "lake-out"}).status_code == 403
    assert len(served.issuer.store.taps()) == 1
    with served.client("admin") as admin:
        assert admin.post("/v1/taps", json={"events": [], "device_id": "no-such-gate"}).status_code == 404
        assert admin.post("/v1/taps", json={"events": [good_event]}).json()["duplicates"] == 1
        oversized = [dict(good_event, event_id=f"e-{i}") for i in range(1001)]
        too_many = admin.post("/v1/taps", json={"events": oversized})
        assert too_many.status_code == 422 and "1000" in too_many.text


def test_offline_double_use_at_two_gates_is_an_incident(served: ServedIssuer, gates: dict[str, Gate]) -> None:
    with served.client("issuer") as issuer:
        slot = issuer.post("/v1/venues/zhejiang-museum/slots",
                           json={"starts_at": NOW, "ends_at": NOW + 7200, "capacity": 10}).json()
        reservation = issuer.post("/v1/reservations", json={"slot_id": slot["id"], "party": 1}).json()
    # Both museum gates are offline: each admits the single-use reservation once.
    a = gates["museum-a"].tap(reservation["code"], NOW + 100)
    b = gates["museum-b"].tap(reservation["code"], NOW + 160)
    gates["museum-b"].upload()
    gates["museum-a"].upload()
    served.clock.now = NOW + 3600
    with served.client("operator") as operator:
        found = operator.get("/v1/incidents").json()
        [double] = [i for i in found if i["kind"] == "double_use"]
        assert double["credential_id"] == reservation["credential_id"]
        assert set(double["tap_ids"]) == {a, b} and double["gate_ids"] == ["museum-a", "museum-b"]
        assert operator.get("/v1/incidents", params={"kind": "double_use"}).json() == [double]
        assert operator.get("/v1/incidents", params={"since": NOW + 1000}).json() == []
    with served.client("issuer") as issuer:
        assert issuer.get("/v1/incidents").status_code == 403


def test_occupancy_after_entries_exits_and_an_annulment(served: ServedIssuer, gates: dict[str, Gate]) -> None:
    codes = [_code(served, product="annual", sites=["west-lake"]) for _ in range(5)]
    group = _code(served, product="group", site="west-lake", party=4)
    for i, code in enumerate(codes):
        (gates["lake-in"] if i % 2 else gates["lake-in-2"]).tap(code, NOW + 60 * i)
    gates["lake-in"].tap(group, NOW + 600)
    annulled = gates["lake-in-2"].tap(_code(served, product="annual", sites=["west-lake"]), NOW + 700)
    gates["lake-in-2"].ledger.annul(annulled, 1, at=NOW + 710)
    for code in codes[:2]:
        gates["lake-out"].tap(code, NOW + 3600 + 60)
    for gate in gates.values():
        gate.upload()
    served.clock.now = NOW + 3600 + 120
    with served.client("operator") as operator:
        occ = operator.get("/v1/sites/west-lake/occupancy", params={"hours": 3}).json()
        assert occ["inside"] == 5 + 4 - 2 and occ["site"] == 1 and len(occ["series"]) == 3
        assert [(p["entries"], p["exits"]) for p in occ["series"]] == [(0, 0), (9, 0), (0, 2)]
        assert occ["series"][-1]["inside_at_end"] == 7 and occ["entries_today"] == 9
        assert operator.get("/v1/sites/1/occupancy").json()["inside"] == 7
        assert operator.get("/v1/sites/nowhere/occupancy").status_code == 404
        assert operator.get("/v1/sites/west-lake/occupancy", params={"hours": 0}).status_code == 422


def test_metro_journey_across_midnight_is_paired_and_priced(served: ServedIssuer, gates: dict[str, Gate]) -> None:
    with served.client("operator") as operator:
        assert operator.put("/v1/fares", json={"default_fare": 300, "pairs": [[4, 5, 500]]}).status_code == 200
    rider = _code(served, product="transit", account="rider-1", modes=["metro"], valid_to=MIDNIGHT + 86_400)
    stray = _code(served, product="transit", account="rider-2", modes=["metro"], valid_to=MIDNIGHT + 86_400)
    tap_in = gates["metro-a-in"].tap(rider, MIDNIGHT - 600)
    tap_out = gates["metro-b-out"].tap(rider, MIDNIGHT + 900)
    gates["metro-a-in"].tap(stray, MIDNIGHT - 300)  # never taps out
    gates["metro-b-out"].upload()  # the exit station's uplink came back first
    gates["metro-a-in"].upload()
    served.clock.now = MIDNIGHT + 6 * 3600
    with served.client("auditor") as auditor:
        rides = auditor.get("/v1/journeys").json()
        complete = [j for j in rides if j["complete"]]
        assert [(j["tap_in_id"], j["tap_out_id"], j["from_site"], j["to_site"], j["fare"]) for j in complete] == [
            (tap_in, tap_out, 4, 5, 500)]
        flagged = [j for j in rides if not j["complete"]]
        assert [j["flag"] for j in flagged] == ["no_tap_out"] and flagged[0]["fare"] is None
        only = auditor.get("/v1/journeys", params={"credential_id": complete[0]["credential_id"]}).json()
        assert len(only) == 1
        assert auditor.get("/v1/journeys", params={"since": MIDNIGHT + 3 * 3600}).json() == []


def test_device_tokens_upload_only_their_own_taps(served: ServedIssuer, gates: dict[str, Gate]) -> None:
    thief = gates["lake-in"]
    victim = gates["lake-out"]
    victim.tap(_code(served, product="annual", sites=["west-lake"]), NOW)
    rows = victim.rows()
    events = [{"event_id": r.event_id, "tap_id": r.tap_id, "kind": r.kind, "body": r.body} for r in rows]
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {thief.token}"}) as client:
        result = client.post("/v1/taps", json={"events": events}).json()
    assert [q["event_id"] for q in result["quarantined"]] == [r.event_id for r in rows]
    assert served.issuer.store.taps() == []
