"""The issuer believes a device only within its registration: taps at another site, in another direction or with
implausible persons are quarantined and reported; a device cannot annul another's tap or squat on its ids; the
same id rule holds for HTTP and MQTT uploads. Over a served issuer, with bodies made by real gate ledgers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from citypass.gate.decision import decide
from citypass.gate.ledger import GateLedger
from citypass.gate.policy import Direction
from citypass.issuer.testing import ServedIssuer, served_issuer
from citypass.sync import codec
from tests.helpers.databases import Databases

NOW = 1_800_000_000
LAYOUT = {"lake-in": (1, Direction.ENTRY), "lingyin-in": (2, Direction.ENTRY), "museum-a": (3, Direction.ENTRY),
          "museum-b": (3, Direction.ENTRY)}


class Gate:
    def __init__(self, served: ServedIssuer, ledger: GateLedger, token: str) -> None:
        self.served, self.ledger, self.token = served, ledger, token

    def tap(self, code: str, at: int) -> dict[str, Any]:
        """Decide and record; the tap's outbox event as a gate uploads it."""
        decision = decide(code, self.ledger, self.ledger.context(), at)
        tap = self.ledger.record(decision, self.ledger.context(), {"decided": float(at)})
        [row] = [r for r in self.ledger.pending(1000) if r.tap_id == tap.tap_id and r.kind == "tap"]
        return {"event_id": row.event_id, "tap_id": row.tap_id, "kind": "tap", "body": json.loads(row.body)}

    def post(self, *events: dict[str, Any]) -> dict[str, Any]:
        with self.served.client(token=self.token) as client:
            response = client.post("/v1/taps", json={"events": list(events)})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
def served(tmp_path: Path, issuer_database: Databases) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path / "issuer", now=NOW, database=issuer_database()) as s:
        yield s


@pytest.fixture
def gates(served: ServedIssuer, tmp_path: Path) -> Iterator[dict[str, Gate]]:
    snapshot, root = served.issuer.export(NOW), served.issuer.root_key().public
    made = {}
    with served.client("technician") as tech, served.client() as anonymous:
        for gate_id, (site, direction) in LAYOUT.items():
            assert tech.post("/v1/devices", json={"id": gate_id, "site": site, "direction": direction.value}).is_success
            secret = tech.post("/v1/enrollments", json={"device_id": gate_id}).json()["token"]
            token = anonymous.post("/v1/enrollments/redeem", json={"token": secret}).json()["api_token"]
            ledger = GateLedger.open(tmp_path / f"{gate_id}.sqlite3", root=root)
            ledger.load_snapshot(snapshot)
            ledger.set_identity(gate_id, site, direction)
            made[gate_id] = Gate(served, ledger, token)
    yield made
    for gate in made.values():
        gate.ledger.close()


def _code(served: ServedIssuer, path: str = "/v1/passes", **body: Any) -> dict[str, Any]:
    with served.client("issuer") as issuer:
        response = issuer.post(path, json=body)
        assert response.status_code == 201, response.text
        made: dict[str, Any] = response.json()
        return made


def _reservation(served: ServedIssuer, party: int) -> dict[str, Any]:
    with served.client("issuer") as issuer:
        slot = issuer.post("/v1/venues/zhejiang-museum/slots",
                           json={"starts_at": NOW, "ends_at": NOW + 7200, "capacity": 50}).json()
    return _code(served, "/v1/reservations", slot_id=slot["id"], party=party)


def _incidents(served: ServedIssuer, kind: str) -> list[dict[str, Any]]:
    served.clock.now = NOW + 3600
    with served.client("operator") as operator:
        found: list[dict[str, Any]] = operator.get("/v1/incidents", params={"kind": kind}).json()
    return found


def test_taps_beyond_the_devices_registration_are_quarantined_and_reported(served: ServedIssuer,
                                                                          gates: dict[str, Gate]) -> None:
    lingyin = gates["lingyin-in"]  # registered at site 2, entry
    genuine = lingyin.tap(_code(served, product="annual", sites=["lingyin"])["code"], NOW)
    forged_site = dict(lingyin.tap(_code(served, product="annual", sites=["lingyin"])["code"], NOW + 1))
    forged_site["body"] = dict(forged_site["body"], site=1, persons=500)  # "500 people entered West Lake"
    crowd = dict(lingyin.tap(_code(served, product="annual", sites=["lingyin"])["code"], NOW + 2))
    crowd["body"] = dict(crowd["body"], persons=500)
    backwards = dict(lingyin.tap(_code(served, product="annual", sites=["lingyin"])["code"], NOW + 3))
    backwards["body"] = dict(backwards["body"], direction="exit", kind="exit")
    result = lingyin.post(genuine, forged_site, crowd, backwards)
    assert result["new_taps"] == 1 and len(result["acknowledged"]) == 4
    why = {q["event_id"]: q["error"] for q in result["quarantined"]}
    assert "not the site lingyin-in is registered at (2)" in why[forged_site["event_id"]]
    assert "500 persons on one annual tap" in why[crowd["event_id"]]
    assert "registered direction" in why[backwards["event_id"]]
    with served.client("operator") as operator:
        assert operator.get("/v1/sites/west-lake/occupancy").json()["inside"] == 0
        assert operator.get("/v1/sites/lingyin/occupancy").json()["inside"] == 1
    [incident] = _incidents(served, "quarantined_upload")
    assert incident["gate_ids"] == ["lingyin-in"] and "3 event(s) from lingyin-in" in incident["detail"]
    assert set(incident["tap_ids"]) == {forged_site["tap_id"], crowd["tap_id"], backwards["tap_id"]}


def test_a_reservation_tap_for_more_than_its_issued_party_is_quarantined(served: ServedIssuer,
                                                                         gates: dict[str, Gate]) -> None:
    gate = gates["museum-a"]
    event = gate.tap(_reservation(served, party=2)["code"], NOW + 60)
    assert event["body"]["persons"] == 2
    inflated = dict(event, body=dict(event["body"], persons=40))  # under the 99 of any party, over this one's 2
    result = gate.post(inflated)
    assert result["new_taps"] == 0 and "admits at most 2" in result["quarantined"][0]["error"]


def test_a_device_cannot_annul_another_devices_tap(served: ServedIssuer, gates: dict[str, Gate]) -> None:
    victim, thief = gates["museum-a"], gates["museum-b"]
    reservation = _reservation(served, party=3)
    tap = victim.tap(reservation["code"], NOW + 60)
    annul = {"event_id": "thief-annul-1", "tap_id": tap["tap_id"], "kind": "annul",
             "body": {"persons_unused": 3, "at": NOW + 70}}
    early = thief.post(annul)  # before the tap reached the issuer: it cannot tell yet, and keeps it
    assert early["quarantined"] == []
    assert victim.post(tap)["new_taps"] == 1
    [stored] = served.issuer.store.taps()
    assert stored.annulled == 0, "another device's annulment was applied"
    late = thief.post(dict(annul, event_id="thief-annul-2"))  # after: refused outright
    assert "belongs to device 'museum-a'" in late["quarantined"][0]["error"]
    [stored] = served.issuer.store.taps()
    assert stored.annulled == 0 and stored.net_persons == 3
    own = victim.post({"event_id": "own-annul", "tap_id": tap["tap_id"], "kind": "annul",
                       "body": {"persons_unused": 1, "at": NOW + 80}})
    assert own["quarantined"] == [] and served.issuer.store.taps()[0].annulled == 1


def test_an_id_used_first_by_another_device_is_quarantined_and_reported_never_silently_acked(
        served: ServedIssuer, gates: dict[str, Gate]) -> None:
    lake, squatter = gates["lake-in"], gates["lingyin-in"]
    real = lake.tap(_code(served, product="annual", sites=["west-lake"])["code"], NOW)
    decoy = squatter.tap(_code(served, product="annual", sites=["lingyin"])["code"], NOW)
    assert squatter.post(dict(decoy, event_id=real["event_id"]))["new_taps"] == 1  # squats on lake-in's event id
    first = lake.post(real)
    assert first["acknowledged"] == [real["event_id"]] and first["duplicates"] == 0 and first["new_taps"] == 0
    assert "used first by device 'lingyin-in'" in first["quarantined"][0]["error"]
    again = lake.post(real)  # a resend: recorded once, then a plain repeat
    assert again["duplicates"] == 1 and again["quarantined"] == []
    [collision] = _incidents(served, "id_collision")
    assert collision["gate_ids"] == ["lake-in"] and collision["tap_ids"] == [real["tap_id"]]

    other = lake.tap(_code(served, product="annual", sites=["west-lake"])["code"], NOW + 5)
    stolen_tap = dict(squatter.tap(_code(served, product="annual", sites=["lingyin"])["code"], NOW + 5),
                      tap_id=other["tap_id"], event_id="squat-2")
    stolen_tap["body"] = dict(stolen_tap["body"], tap_id=other["tap_id"])
    assert squatter.post(stolen_tap)["new_taps"] == 1  # squats on lake-in's tap id
    refused = lake.post(other)
    assert refused["new_taps"] == 0 and "belongs to device 'lingyin-in'" in refused["quarantined"][0]["error"]
    assert len(_incidents(served, "quarantined_upload")) == 1


@pytest.mark.parametrize("bad", ['e"1', "e\x001", "e 1", "-e1", "é"])
def test_one_id_rule_for_http_and_mqtt_uploads(served: ServedIssuer, gates: dict[str, Gate], bad: str) -> None:
    event = gates["lake-in"].tap(_code(served, product="annual", sites=["west-lake"])["code"], NOW)
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {gates['lake-in'].token}"}) as client:
        for field in ("event_id", "tap_id"):
            assert client.post("/v1/taps", json={"events": [dict(event, **{field: bad})]}).status_code == 422
    for field in ("event_id", "tap_id"):
        wire = codec.Event(**{"event_id": event["event_id"], "tap_id": event["tap_id"], "kind": "tap",
                              "body": json.dumps(event["body"]), "created_at": NOW, field: bad})
        with pytest.raises(codec.CodecError, match="A-Z a-z 0-9"):
            codec.decode_taps(codec.encode_taps(1, [wire]))
    assert served.issuer.store.tap_count() == 0
