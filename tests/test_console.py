"""The console over plain HTTP (the issuer served for real): the session cookie's flags, the CSRF token and the
Origin check on every form, refusals for other roles and revoked tokens, every page answering, and zh/en."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from citypass.issuer.console import sample
from citypass.issuer.records import TapEvent
from citypass.issuer.testing import ServedIssuer, served_issuer

NOW = 1_800_000_000
PAGES = ("city", "live", "incidents", "devices", "passes?q=0011", "venues", "groups")


OPEN: list[httpx.Client] = []


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path / "issuer", now=NOW) as s:
        yield s
        while OPEN:
            OPEN.pop().close()


def login(served: ServedIssuer, role: str = "operator") -> tuple[httpx.Client, httpx.Response]:
    """A browser-like client (closed with the fixture) that has posted the login form with ``role``'s token."""
    client = httpx.Client(base_url=served.url)
    OPEN.append(client)
    form = client.get("/console/login")
    nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', form.text)
    assert nonce is not None
    return client, client.post("/console/login", data={"nonce": nonce.group(1), "token": served.tokens[role]})


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None
    return found.group(1)


def test_login_sets_a_strict_httponly_cookie_and_every_page_answers(served: ServedIssuer) -> None:
    client, answer = login(served)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/city"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    for path in PAGES:
        page = client.get(f"/console/{path}")
        assert page.status_code == 200, (path, page.text[:300])
        assert "script-src 'self'" in page.headers["content-security-policy"] and "<script>" not in page.text
        assert 'src="/console/static/assets/console.js"' in page.text
    assert client.get("/console/static/assets/console.js").status_code == 200
    zh = client.get("/console/city").text
    en = client.get("/console/lang", params={"to": "en", "back": "/console/city"}, follow_redirects=True).text
    assert "全城概况" in zh and "City now" in en and "全城概况" not in en
    with httpx.Client(base_url=served.url) as anonymous:
        assert anonymous.get("/console/city").headers["location"] == "/console/login"


def test_every_form_needs_the_sessions_csrf_token_and_this_origin(served: ServedIssuer) -> None:
    client, _ = login(served)
    token = csrf(client.get("/console/venues"))
    body = {"title": "西湖", "capacity": "9", "passback_minutes": "30", "passback_hard": "1"}
    assert client.post("/console/sites/west-lake", data=body).status_code == 403  # no token
    wrong = token[:-1] + ("1" if token.endswith("0") else "0")  # one digit off (never the token itself)
    assert client.post("/console/sites/west-lake", data={**body, "csrf": wrong}).status_code == 403
    foreign = client.post("/console/sites/west-lake", data={**body, "csrf": token},
                          headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert served.issuer.store.sites()[0].capacity is None
    done = client.post("/console/sites/west-lake", data={**body, "csrf": token}, headers={"Origin": served.url})
    assert done.status_code == 303 and served.issuer.store.sites()[0].capacity == 9
    other, _ = login(served, "admin")  # another session's token is not this one's
    assert csrf(other.get("/console/venues")) != token
    deadline = time.monotonic() + 10  # the audit row is written once the answer has gone out
    while len([e for e in served.issuer.store.audit_log(limit=10) if e.path == "/console/sites/west-lake"]) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    log = served.issuer.store.audit_log(limit=10)
    assert [e.status for e in log if e.path == "/console/sites/west-lake"] == [303, 403, 403, 403]
    assert all("cpt_" not in e.detail for e in log)


def test_other_roles_and_revoked_tokens_are_refused(served: ServedIssuer) -> None:
    for role in ("auditor", "issuer", "technician"):
        client, answer = login(served, role)
        assert answer.status_code == 403 and "cp_console=" not in answer.headers.get("set-cookie", "")
        client.cookies.set("cp_console", served.tokens[role], path="/console")
        for path in PAGES:
            assert client.get(f"/console/{path}").status_code == 403, (role, path)
    client, _ = login(served)
    assert served.issuer.store.revoke_token(served.tokens["operator"].split("_")[1], NOW)  # `token revoke` does this
    assert client.get("/console/city").headers["location"] == "/console/login"


def test_the_groups_page_names_overdue_groups_and_pages_by_id(served: ServedIssuer) -> None:
    with served.client("operator") as operator:
        late = operator.post("/v1/groups", json={
            "agency": "A", "guide": "G", "contact": "C", "party": 3, "price_per_person_fen": 9000,
            "itinerary": [{"site": "lingyin", "planned_from": NOW - 3600, "planned_to": NOW}]}).json()
        fine = operator.post("/v1/groups", json={
            "agency": "B", "guide": "H", "contact": "D", "party": 3, "price_per_person_fen": 9000,
            "itinerary": [{"site": "lingyin", "planned_from": NOW + 3600, "planned_to": NOW + 7200}]}).json()
    client, _ = login(served)
    page = client.get("/console/groups").text
    overdue = re.search(r'id="overdue-groups">(.*?)</p>', page)
    assert overdue is not None and late["id"] in overdue.group(1) and fine["id"] not in overdue.group(1)
    first = min(late["id"], fine["id"])
    rest = re.search(r'<table id="groups">(.*?)</table>', client.get("/console/groups", params={"after": first}).text)
    assert rest is not None and max(late["id"], fine["id"]) in rest.group(1) and first not in rest.group(1)


def _events(lines: Iterator[str], count: int, within: float = 5.0) -> list[tuple[str, dict[str, Any]]]:
    """The next ``count`` events of a server-sent event stream, as (event, data) — comments and retry skipped —
    within ``within`` seconds (the stream says ``: idle`` every 250 ms, so the clock is looked at that often)."""
    found: list[tuple[str, dict[str, Any]]] = []
    kind = data = None
    deadline = time.monotonic() + within
    for line in lines:
        assert time.monotonic() < deadline, f"waited {within} s for {count} events; got {found}"
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and kind is not None:
            found.append((kind, data or {}))
            kind = data = None
            if len(found) == count:
                return found
    raise AssertionError(f"the stream ended after {found}")


def _tap(tap_id: str, site: int) -> TapEvent:
    return TapEvent(f"{tap_id}-e", tap_id, "tap", {
        "gate_id": f"gate-{site}", "site": site, "direction": "entry", "decision": "allow", "reason": None,
        "flags": [], "credential_id": f"{0xc0ffee00 + site:016x}", "product": 1, "persons": 1, "kind": "entry",
        "presentation_id": None, "at": NOW}, NOW)


def test_the_live_stream_names_every_site_once_and_a_new_site_before_its_first_tap(served: ServedIssuer) -> None:
    """The live taps table names a tap's site from the stream's ``sites`` event (titles in the session's language,
    the slug where there is none); the taps themselves carry only the site's number."""
    with served.client("operator") as operator:
        assert operator.patch("/v1/sites/west-lake", json={"title": "西湖", "title_en": "West Lake"}).is_success
    client, _ = login(served)
    client.get("/console/lang", params={"to": "en", "back": "/console/live"})
    with client.stream("GET", "/console/live/stream", timeout=10) as answer:
        lines = answer.iter_lines()
        [(kind, sites)] = _events(lines, 1)
        assert kind == "sites" and len(sites) == len(served.issuer.store.sites())
        assert sites["1"] == {"title": "West Lake", "name": "west-lake"}
        assert sites["2"] == {"title": "lingyin", "name": "lingyin"}  # no title: the slug
        with served.client("issuer") as issuer:
            added = issuer.post("/v1/sites", json={"name": "leifeng", "title": "雷峰塔"}).json()["number"]
        sample.ingest_all(served.issuer, iter([_tap("t-lake", 1), _tap("t-pagoda", added)]), lambda e: NOW)
        got = _events(lines, 3)
    assert [kind for kind, _ in got] == ["sites", "tap", "tap"]  # the new site is named before its tap
    assert got[0][1][str(added)] == {"title": "雷峰塔", "name": "leifeng"}  # no English title: the Chinese one
    assert [(data["tap_id"], data["site"]) for _, data in got[1:]] == [("t-lake", 1), ("t-pagoda", added)]
    assert not any("title" in data or "name" in data for _, data in got[1:])  # each tap: just the number


def test_the_devices_table_names_a_gates_site_by_its_title(served: ServedIssuer) -> None:
    with served.client("operator") as operator:
        assert operator.patch("/v1/sites/west-lake", json={"title": "西湖"}).is_success
    with served.client("technician") as technician:
        for gate, site in (("lake-in", "west-lake"), ("temple-in", "lingyin")):
            assert technician.post("/v1/devices", json={"id": gate, "site": site}).is_success
    client, _ = login(served)
    table = re.search(r'<table id="devices">(.*?)</table>', client.get("/console/devices").text)
    assert table is not None
    rows = {r[0]: r[1] for r in re.findall(r"<tr><td><code>([a-z-]+)</code></td><td>([^<]*)</td>", table.group(1))}
    assert rows == {"lake-in": "西湖", "temple-in": "lingyin"}


def test_a_pass_and_the_live_page_name_products_decisions_and_reasons_with_the_code_on_hover(
        served: ServedIssuer) -> None:
    """The pass's product by the wallet's name (景点年卡), its code on hover; the live page carries the names of every
    product, decision and reason code once (``data-codes``), in the session's language, while the taps of its
    stream keep carrying the codes."""
    with served.client("issuer") as issuer:
        credential_id = issuer.post("/v1/passes", json={"product": "annual", "sites": ["west-lake"]}).json()[
            "credential_id"]
    client, _ = login(served)
    facts = client.get("/console/passes", params={"q": credential_id}).text
    assert '<span class="code" title="annual" data-code="annual">景点年卡</span>' in facts
    live = client.get("/console/live").text
    found = re.search(r'data-codes="([^"]*)"', live)
    assert found is not None
    codes = json.loads(found.group(1).replace("&quot;", '"'))
    assert codes["product"]["annual"] == "景点年卡" and codes["decision"] == {"allow": "通过", "deny": "拒绝"}
    assert codes["reason"]["expired"] == "凭证已过期" and codes["reason"]["passback"] == "刚刚已入园，请稍后再试"
    assert '<option value="1" title="annual">景点年卡</option>' in live
    en = client.get("/console/lang", params={"to": "en", "back": "/console/passes?q=" + credential_id},
                    follow_redirects=True).text
    assert ">Annual scenic pass</span>" in en
    with client.stream("GET", "/console/live/stream", timeout=10) as answer:
        lines = answer.iter_lines()
        _events(lines, 1)
        sample.ingest_all(served.issuer, iter([_tap("t-coded", 1)]), lambda e: NOW)
        [(kind, tap)] = _events(lines, 1)
    assert kind == "tap" and (tap["product"], tap["decision"], tap["reason"]) == ("annual", "allow", None)
