"""The issuer's HTTP API, served for real (uvicorn on a free port) and called with httpx.

Resources: passes, sites, venues, slots, reservations, revocations, devices, enrollments, health, keys,
fares, the audit log; roles on every endpoint (401 without a token, 403 for the wrong role); hostile
bodies answered with 4xx, never 500.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from citypass.credential.codes import parse
from citypass.credential.keys import Alg, SigningKey
from citypass.issuer.records import ROLES
from citypass.issuer.testing import ServedIssuer, served_issuer
from tests.helpers.databases import Databases

NOW = 1_800_000_000
HOUR = 3600
#: Called with a one-time secret in the body instead of a bearer token (enrollment, wallet claim).
TOKENLESS = ("/v1/enrollments/redeem", "/v1/enrollments/check", "/v1/wallet/claims", "/v1/wallet/benefit",
             "/v1/trust-list")  # the trust list is public


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, issuer_database: Databases) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path_factory.mktemp("api") / "issuer", now=NOW, database=issuer_database()) as s:
        with s.client("technician") as tech:
            assert tech.post("/v1/devices", json={"id": "gate-api-1", "site": 1}).status_code == 201
            token = tech.post("/v1/enrollments", json={"device_id": "gate-api-1"}).json()["token"]
        with s.client() as anonymous:
            s.tokens["device"] = anonymous.post("/v1/enrollments/redeem", json={"token": token}).json()["api_token"]
        yield s


@pytest.fixture
def admin(served: ServedIssuer) -> Iterator[httpx.Client]:
    with served.client("admin") as client:
        yield client


def test_healthz_needs_no_token_and_openapi_documents_every_resource(served: ServedIssuer) -> None:
    with served.client() as anonymous:
        health = anonymous.get("/healthz").json()
        assert health["status"] == "ok" and health["time"] == served.clock.now
        spec = anonymous.get("/openapi.json").json()
    required = {
        ("get", "/healthz"), ("post", "/v1/passes"), ("get", "/v1/venues"), ("post", "/v1/venues"),
        ("get", "/v1/venues/{venue_id}/slots"), ("post", "/v1/venues/{venue_id}/slots"),
        ("post", "/v1/reservations"), ("delete", "/v1/reservations/{reservation_id}"),
        ("post", "/v1/revocations"), ("get", "/v1/revocations"), ("get", "/v1/ledger/snapshot"),
        ("get", "/v1/ledger/deltas"), ("get", "/v1/devices"), ("post", "/v1/devices"), ("post", "/v1/enrollments"),
        ("post", "/v1/taps"), ("get", "/v1/incidents"), ("get", "/v1/sites/{site_id}/occupancy"),
        ("get", "/v1/journeys"), ("get", "/v1/devices/{device_id}/health"), ("post", "/v1/keys/rotate"),
    }
    present = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert required <= present
    assert spec["components"]["securitySchemes"]["ApiToken"]["scheme"] == "bearer"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method} {path} has no summary"
            ok = [c for c in op["responses"] if c.startswith("2")]
            assert ok, f"{method} {path} documents no success response"
            content = op["responses"][ok[0]].get("content", {})
            if ok[0] != "204":
                assert "application/json" in content or "application/cbor" in content, (method, path)
            if path.startswith("/v1/") and path not in TOKENLESS:
                assert "Roles: admin" in op["description"], f"{method} {path} does not document its roles"
                for code in ("401", "403"):
                    assert code in op["responses"], f"{method} {path} does not document {code}"


def _allowed_roles(op: dict[str, object]) -> set[str]:
    match = re.search(r"Roles: ([a-z, ]+)\.", str(op.get("description", "")))
    assert match, op
    return {r.strip() for r in match.group(1).split(",")}


def test_every_endpoint_checks_its_documented_role(served: ServedIssuer) -> None:
    """401 without (or with a bad) token; 403 for every role the operation does not document; never 401/403
    for a role it does. Bodies are deliberately invalid, so allowed calls stop at validation (422)."""
    with served.client() as anonymous:
        spec = anonymous.get("/openapi.json").json()
    checked = 0
    roles: tuple[str | None, ...] = (*ROLES, "device", None, "bogus")
    tokens = {role: served.tokens[role] for role in (*ROLES, "device")} | {
        None: None, "bogus": "cpt_000000000000_" + "A" * 43}
    clients = {role: served.client(token=tokens[role]) for role in roles}
    for path, ops in spec["paths"].items():
        if not path.startswith("/v1/") or path in TOKENLESS:
            continue
        for method, op in ops.items():
            allowed = _allowed_roles(op)
            for role in roles:
                device = "gate-api-1" if path.endswith("/health") else "no-such-device"  # never retire ours
                url = path.format(device_id=device, venue_id="zhejiang-museum", site_id="west-lake",
                                  reservation_id="r_" + "0" * 16, credential_id="00" * 8,
                                  incident_id="double_use-" + "0" * 24, group_id="g_" + "0" * 12)
                kwargs = {"json": {"unknown_field": 1}} if method in ("post", "put") else {}
                status = clients[role].request(method.upper(), url, **kwargs).status_code  # type: ignore[arg-type]
                if role in (None, "bogus"):
                    assert status == 401, (method, path, role, status)
                elif role in allowed:
                    assert status not in (401, 403), (method, path, role, status)
                else:
                    assert status == 403, (method, path, role, status)
                checked += 1
    for client in clients.values():
        client.close()
    assert checked > 150


def test_passes_of_every_product_with_and_without_a_holder_key(admin: httpx.Client, served: ServedIssuer) -> None:
    with served.client("issuer") as issuer:
        annual = issuer.post("/v1/passes", json={"product": "annual", "sites": ["west-lake", "2"]})
        assert annual.status_code == 201, annual.text
        body = annual.json()
        cred = parse(body["code"]).credential
        assert body["credential_id"] == cred.id.hex() and body["product"] == "annual"
        assert cred.sites() == frozenset({1, 2}) and body["valid_to"] - body["valid_from"] == 365 * 86_400
        transit = issuer.post("/v1/passes", json={"product": "transit", "account": "13800000000",
                                                   "modes": ["metro"]}).json()
        assert transit["product"] == "transit" and not transit["holder_bound"]
        group = issuer.post("/v1/passes", json={"product": "group", "site": "lingyin", "party": 20}).json()
        assert parse(group["code"]).credential.describe()["party"] == 20
        ed, p256 = SigningKey.generate(), SigningKey.generate(Alg.ES256)
        for holder_key in (ed.public.pem().decode(), base64.b64encode(ed.public.raw).decode(),
                           base64.urlsafe_b64encode(ed.public.raw).decode().rstrip("="),
                           base64.b64encode(p256.public.raw).decode()):
            bound = issuer.post("/v1/passes", json={"product": "annual", "sites": ["west-lake"],
                                                     "holder_key": holder_key})
            assert bound.status_code == 201 and bound.json()["holder_bound"], bound.text
        for bad, field in (({"product": "annual", "sites": ["nowhere"]}, "unknown site"),
                           ({"product": "annual", "sites": ["west-lake"], "holder_key": "AAAA"}, "holder_key"),
                           ({"product": "annual", "sites": []}, "sites"),
                           ({"product": "reservation"}, "product"),
                           ({"product": "group", "site": "lingyin", "party": 100}, "party"),
                           ({"product": "annual", "sites": ["west-lake"], "valid_from": NOW, "valid_to": NOW},
                            "valid-to")):
            response = issuer.post("/v1/passes", json=bad)
            assert response.status_code == 422 and field in response.text, (bad, response.text)


def test_venues_slots_and_reservations_never_overbook_and_cancel_revokes(served: ServedIssuer) -> None:
    with served.client("issuer") as issuer, served.client("auditor") as auditor:
        venue = issuer.post("/v1/venues", json={"name": "hangzhou-library", "title": "杭州图书馆"})
        assert venue.status_code == 201 and venue.json()["kind"] == "museum"
        assert issuer.post("/v1/venues", json={"name": "hangzhou-library"}).status_code == 409
        assert issuer.post("/v1/venues", json={"name": "bus-x", "kind": "bus"}).status_code == 422
        assert "hangzhou-library" in [v["name"] for v in auditor.get("/v1/venues").json()]
        assert "metro-fengqi" not in [v["name"] for v in auditor.get("/v1/venues").json()]
        slot = issuer.post("/v1/venues/hangzhou-library/slots",
                           json={"starts_at": NOW + HOUR, "ends_at": NOW + 3 * HOUR, "capacity": 3}).json()
        assert slot["available"] == 3
        assert issuer.post("/v1/venues/metro-fengqi/slots",
                           json={"starts_at": NOW, "ends_at": NOW + HOUR, "capacity": 3}).status_code == 404
        assert issuer.post("/v1/venues/hangzhou-library/slots",
                           json={"starts_at": NOW, "ends_at": NOW, "capacity": 3}).status_code == 422

        first = issuer.post("/v1/reservations", json={"slot_id": slot["id"], "party": 2})
        assert first.status_code == 201, first.text
        reservation = first.json()
        cred = parse(reservation["code"]).credential
        assert (cred.valid_from, cred.valid_to, cred.describe()["party"]) == (NOW + HOUR, NOW + 3 * HOUR, 2)
        full = issuer.post("/v1/reservations", json={"slot_id": slot["id"], "party": 2})
        assert full.status_code == 409 and "1 place(s) left" in full.json()["detail"]
        assert issuer.post("/v1/reservations", json={"slot_id": slot["id"], "party": 1}).status_code == 201
        assert issuer.post("/v1/reservations", json={"slot_id": "s_000000000000"}).status_code == 404
        [listed] = auditor.get("/v1/venues/hangzhou-library/slots").json()
        assert (listed["booked"], listed["available"]) == (3, 0)

        cancelled = issuer.delete(f"/v1/reservations/{reservation['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert issuer.delete(f"/v1/reservations/{reservation['id']}").json()["status"] == "cancelled"
        assert auditor.get(f"/v1/reservations/{reservation['id']}").json()["cancelled_at"] == served.clock.now
        revoked = {r["id"] for r in auditor.get("/v1/revocations", params={"kind": "credential"}).json()["items"]}
        assert reservation["credential_id"] in revoked
        assert auditor.get("/v1/venues/hangzhou-library/slots").json()[0]["available"] == 2
        served.clock.now += 4 * HOUR  # the slot is over: it is no longer listed, nor bookable
        try:
            assert auditor.get("/v1/venues/hangzhou-library/slots").json() == []
            late = issuer.post("/v1/reservations", json={"slot_id": slot["id"]})
            assert late.status_code == 422 and "ended" in late.text
        finally:
            served.clock.now -= 4 * HOUR


def test_revocations_by_id_code_and_holder_are_idempotent_and_lifted_by_admin(served: ServedIssuer,
                                                                               admin: httpx.Client) -> None:
    holder = SigningKey.generate()
    with served.client("issuer") as issuer, served.client("operator") as operator:
        code = issuer.post("/v1/passes", json={"product": "annual", "sites": ["west-lake"]}).json()
        seq = admin.get("/v1/ledger").json()["seq"]
        by_code = operator.post("/v1/revocations", json={"code": code["code"], "reason": "lost"})
        assert by_code.status_code == 201
        assert by_code.json() | {"revoked_at": 0} == {
            "kind": "credential", "id": code["credential_id"], "revoked_at": 0, "reason": "lost", "new": True,
            "ledger_seq": seq + 1}
        again = operator.post("/v1/revocations", json={"credential_id": code["credential_id"].upper()}).json()
        assert again["new"] is False and again["ledger_seq"] == seq + 1
        by_holder = operator.post("/v1/revocations", json={"holder_key": holder.public.pem().decode()}).json()
        assert by_holder["kind"] == "holder" and len(by_holder["id"]) == 32
        assert operator.post("/v1/revocations", json={"credential_id": "00", "code": "CP1:x"}).status_code == 422
        assert operator.post("/v1/revocations", json={}).status_code == 422
        assert operator.post("/v1/revocations", json={"code": "CP1:@@@"}).status_code == 422
        holders = operator.get("/v1/revocations", params={"kind": "holder"}).json()["items"]
        assert [h["id"] for h in holders] == [by_holder["id"]]
        assert issuer.delete(f"/v1/revocations/{code['credential_id']}").status_code == 403
    lifted = admin.delete(f"/v1/revocations/{code['credential_id']}")
    assert lifted.status_code == 200 and lifted.json()["lifted"] is True
    assert admin.delete(f"/v1/revocations/{code['credential_id']}").status_code == 404


def test_devices_enrollments_are_one_time_and_expire(served: ServedIssuer, admin: httpx.Client) -> None:
    with served.client("technician") as tech, served.client() as anonymous:
        device = tech.post("/v1/devices", json={"id": "gate-lingyin-2", "site": 2, "direction": "exit",
                                                "description": "south exit"})
        assert device.status_code == 201 and device.json()["status"] == "registered"
        assert tech.post("/v1/devices", json={"id": "gate-lingyin-2", "site": 2}).status_code == 409
        assert tech.post("/v1/devices", json={"id": "gate-x", "site": 999}).status_code == 422
        assert tech.post("/v1/devices", json={"id": "has space", "site": 2}).status_code == 422
        assert tech.post("/v1/enrollments", json={"device_id": "nope"}).status_code == 404

        enrollment = tech.post("/v1/enrollments", json={"device_id": "gate-lingyin-2", "ttl_s": 600}).json()
        assert enrollment["expires_at"] == served.clock.now + 600 and enrollment["token"].startswith("cpe_")
        redeemed = anonymous.post("/v1/enrollments/redeem", json={"token": enrollment["token"]})
        assert redeemed.status_code == 201, redeemed.text
        body = redeemed.json()
        assert body["device_id"] == "gate-lingyin-2" and body["root_public_key"].startswith("-----BEGIN PUBLIC KEY")
        again = anonymous.post("/v1/enrollments/redeem", json={"token": enrollment["token"]})
        assert again.status_code == 410 and "used" in again.json()["detail"]
        forged = enrollment["token"][:-4] + "AAAA"
        assert anonymous.post("/v1/enrollments/redeem", json={"token": forged}).status_code == 401
        assert anonymous.post("/v1/enrollments/redeem", json={"token": "garbage"}).status_code == 401
        assert tech.get("/v1/devices/gate-lingyin-2").json()["status"] == "enrolled"

        late = tech.post("/v1/enrollments", json={"device_id": "gate-lingyin-2", "ttl_s": 60}).json()
        served.clock.now += 61
        try:
            expired = anonymous.post("/v1/enrollments/redeem", json={"token": late["token"]})
            assert expired.status_code == 410 and "expired" in expired.json()["detail"]
        finally:
            served.clock.now -= 61

        with served.client(token=body["api_token"]) as gate:
            assert gate.get("/v1/ledger").status_code == 200
            assert gate.post("/v1/devices/gate-lingyin-2/health", json={"ledger_seq": 1}).status_code == 204
            assert gate.post("/v1/devices/gate-api-1/health", json={}).status_code == 403
            assert gate.get("/v1/devices").status_code == 403
            assert tech.delete("/v1/devices/gate-lingyin-2").json()["status"] == "retired"
            assert gate.get("/v1/ledger").status_code == 401  # a retired device's token is dead
        assert tech.post("/v1/enrollments", json={"device_id": "gate-lingyin-2"}).status_code == 409
    assert "gate-lingyin-2" in [d["id"] for d in admin.get("/v1/devices").json()]


def test_device_health_reports_lag_backlog_and_clock_offset(served: ServedIssuer) -> None:
    with served.client(token=served.tokens["device"]) as gate, served.client("operator") as operator:
        seq = operator.get("/v1/ledger").json()["seq"]
        report = {"ledger_seq": seq - 2, "outbox_backlog": 17, "clock": served.clock.now + 3.5,
                  "details": {"version": "0.1.0"}}
        assert gate.post("/v1/devices/gate-api-1/health", json=report).status_code == 204
        health = operator.get("/v1/devices/gate-api-1/health").json()
        assert health == {"device_id": "gate-api-1", "status": "ok", "last_seen": served.clock.now,
                          "ledger_seq": seq - 2, "ledger_behind": 2, "outbox_backlog": 17, "clock_offset_s": 3.5,
                          "reported_at": served.clock.now, "details": {"version": "0.1.0"}}
        served.clock.now += 20 * 60
        try:
            assert operator.get("/v1/devices/gate-api-1/health").json()["status"] == "stale"
        finally:
            served.clock.now -= 20 * 60
        assert operator.get("/v1/devices/unknown/health").status_code == 404
        assert gate.post("/v1/devices/gate-api-1/health", json={"clock": "NaN"}).status_code == 422


def test_key_rotation_via_api(served: ServedIssuer, admin: httpx.Client) -> None:
    with served.client("issuer") as issuer:
        before = issuer.get("/v1/keys").json()
        assert issuer.post("/v1/keys/rotate", json={}).status_code == 403
        past = admin.post("/v1/keys/rotate", json={"retire_old_at": NOW - 1})
        assert past.status_code == 422 and "past" in past.text
        rotated = admin.post("/v1/keys/rotate", json={"retire_old_at": served.clock.now + 86_400}).json()
        assert rotated["old_valid_to"] == served.clock.now + 86_400 and rotated["new_kid"] != rotated["old_kid"]
        after = issuer.get("/v1/keys").json()
        assert len(after) == len(before) + 1
        assert [k["kid"] for k in after if k["role"] == "issuer" and k["active"]] == [rotated["new_kid"]]
        code = issuer.post("/v1/passes", json={"product": "annual", "sites": ["west-lake"]}).json()["code"]
        assert parse(code).sign1.kid.hex() == rotated["new_kid"]


def test_fare_table(served: ServedIssuer) -> None:
    with served.client("operator") as operator, served.client("auditor") as auditor:
        assert auditor.get("/v1/fares").json()["default_fare"] == 200
        table = {"default_fare": 300, "pairs": [[4, 5, 400]], "zones": {"4": 1, "6": 2}, "base": 200, "per_zone": 50}
        assert operator.put("/v1/fares", json=table).status_code == 200
        assert auditor.get("/v1/fares").json() == table
        assert auditor.put("/v1/fares", json=table).status_code == 403
        for bad in ({"default_fare": -1}, {"default_fare": 1, "pairs": [[4, 5]]},
                    {"default_fare": 1, "zones": {"x": 1}}, {"default_fare": 1, "pairs": [[4, 5, 1], [4, 5, 2]]},
                    {"default_fare": 1, "pairs": [[2**32, 5, 1]]}):
            assert operator.put("/v1/fares", json=bad).status_code == 422, bad


def test_every_mutating_call_is_audited_with_who_what_when(served: ServedIssuer, admin: httpx.Client) -> None:
    with served.client("issuer") as issuer, served.client() as anonymous:
        issuer.post("/v1/passes", json={"product": "group", "site": "west-lake", "party": 2})
        issuer.post("/v1/devices", json={"id": "gate-z", "site": 1})  # 403
        anonymous.post("/v1/revocations", json={"credential_id": "00"})  # 401
        issuer.get("/v1/venues")  # a read: not audited
    entries = admin.get("/v1/audit", params={"limit": 3}).json()
    assert [(e["method"], e["path"], e["status"], e["role"]) for e in entries] == [
        ("POST", "/v1/revocations", 401, "-"), ("POST", "/v1/devices", 403, "issuer"),
        ("POST", "/v1/passes", 201, "issuer")]
    assert entries[2]["detail"].startswith("signed group ") and entries[2]["at"] == served.clock.now
    assert entries[2]["actor"] == served.tokens["issuer"].split("_")[1]
    with served.client("auditor") as auditor:
        assert auditor.get("/v1/audit").status_code == 200
    with served.client("operator") as operator:
        assert operator.get("/v1/audit").status_code == 403


def test_hostile_bodies_get_clear_4xx_never_500(served: ServedIssuer, admin: httpx.Client) -> None:
    cases: list[tuple[str, str, dict[str, object]]] = [
        ("POST", "/v1/passes", {"content": b"{not json"}),
        ("POST", "/v1/passes", {"content": b"[" * 100_000 + b"]" * 100_000}),
        ("POST", "/v1/passes", {"json": {"product": "annual", "sites": ["west-lake"], "valid_to": 2**70}}),
        ("POST", "/v1/passes", {"content": b'{"product": "transit", "account": "\\ud800", "modes": ["metro"]}'}),
        ("POST", "/v1/devices", {"content": b'{"id": "gate-u", "site": 1, "description": "\\udfff"}'}),
        ("POST", "/v1/passes", {"json": {"product": "annual", "sites": ["west-lake"], "extra": True}}),
        ("POST", "/v1/passes", {"json": {"product": "annual", "sites": ["x" * 49]}}),
        ("POST", "/v1/revocations", {"json": {"credential_id": "zz"}}),
        ("POST", "/v1/devices", {"json": {"id": "g" * 65, "site": 1}}),
        ("POST", "/v1/taps", {"json": {"events": [{"event_id": "e", "tap_id": "t", "kind": "tap", "body": {}}]
                                       * 1001}}),
        ("GET", "/v1/venues", {"params": {"limt": 5}}),
        ("GET", "/v1/devices", {"params": [("limit", "5"), ("limit", "1000")]}),  # not quietly the last one
        ("GET", "/v1/ledger/deltas", {"params": {"since": "-1"}}),
        ("GET", "/v1/ledger/deltas", {"params": {"since": str(2**80)}}),
        ("GET", "/v1/incidents", {"params": {"since": NOW, "until": NOW - 1}}),
        ("GET", "/v1/incidents", {"params": {"since": 0, "until": NOW}}),
        ("PUT", "/v1/fares", {"content": b'{"default_fare": NaN}'}),
    ]
    for method, path, kwargs in cases:
        response = admin.request(method, path, headers={"content-type": "application/json"}, **kwargs)  # type: ignore[arg-type]
        assert 400 <= response.status_code < 500, (method, path, response.status_code, response.text[:200])
        assert response.json()["detail"], (method, path)
    too_big = admin.post("/v1/taps", content=b"x" * (3 * 1024 * 1024), headers={"content-type": "application/json"})
    assert too_big.status_code == 413
    chunked = admin.post("/v1/taps", content=iter([b"x" * 1024 * 1024] * 3),
                         headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    with served.client(token="Basic abc") as odd:
        assert odd.get("/v1/venues").status_code == 401
    assert admin.get("/v1/venues", headers={"Authorization": "Bearer"}).status_code == 401


def test_cli_token_created_for_a_home_authenticates(served: ServedIssuer, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from citypass.cli import cli

    home = str(served.issuer.home.path)
    result = CliRunner().invoke(cli, ["issuer", "token", "create", "--home", home, "--role", "auditor",
                                      "--label", "ci"], catch_exceptions=False)
    assert result.exit_code == 0
    token = result.output.strip()
    assert re.fullmatch(r"cpt_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    stored = served.issuer.store.token(token.split("_")[1])
    assert stored is not None and stored.secret_hash != token.encode()  # only its hash is stored
    if served.issuer.home.database_url() is None:  # and the SQLite file holds nothing more
        assert token.encode() not in served.issuer.home.db_path.read_bytes()
    with served.client(token=token) as auditor:
        assert auditor.get("/v1/audit").status_code == 200
        listed = CliRunner().invoke(cli, ["issuer", "token", "list", "--home", home]).output
        assert token.split("_")[1] in listed and "ci" in listed
        assert CliRunner().invoke(cli, ["issuer", "token", "revoke", "--home", home, token]).exit_code == 0
        assert auditor.get("/v1/audit").status_code == 401
    bad = CliRunner().invoke(cli, ["issuer", "token", "create", "--home", home, "--role", "device"])
    assert bad.exit_code == 2
