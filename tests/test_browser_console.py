"""The operators' console in a real browser (Debian's Chromium, headless, driven by Playwright) against the issuer
served for real (uvicorn), with real gate ledgers uploading their outbox over HTTP and deciding with their own
decision core: log in, watch a tap arrive live, acknowledge an incident, revoke a pass and see the gate's decision
change, edit a site's capacity and see the gate's next decision use it, register a group and follow it across two
sites, find it with the emergency query; a token without the operator role sees and does nothing; a form posted
from another site is refused."""

from __future__ import annotations

import time
from typing import Any

import pytest

from citypass.credential.delta import load_delta
from citypass.credential.reasons import Reason
from citypass.gate.decision import decide
from citypass.issuer.testing import ServedIssuer
from tests.helpers.browser import browser, wait_js
from tests.helpers.issuer_gates import NOW, Gate, gates, served
from tests.helpers.issuer_gates import mint_code as _code

__all__ = ["browser", "gates", "served"]  # fixtures

pytestmark = pytest.mark.slow

DESKTOP = {"viewport": {"width": 1280, "height": 900}}


def login(browser: Any, served: ServedIssuer, role: str = "operator") -> Any:
    page = browser.page(DESKTOP)
    page.goto(served.url + "/console/login")
    page.fill("input[name=token]", served.tokens[role])
    page.click("form.login button[type=submit]")
    return page


def sync(served: ServedIssuer, gate: Gate) -> None:
    """What the gate's sync does: fetch the delta since its sequence, apply it (sites too), report its health."""
    with served.client(token=gate.token) as client:
        answer = client.get("/v1/ledger/deltas", params={"since": gate.ledger.seq})
        if answer.status_code == 200:
            delta = load_delta(answer.content, gate.ledger.trust)
            gate.ledger.apply_delta(**delta.ledger_arguments())
        health = client.post(f"/v1/devices/{gate.gate_id}/health", json={"ledger_seq": gate.ledger.seq})
        assert health.status_code == 204, health.text


def site_cell(page: Any, tap_id: str) -> str:
    """The 景点 / Site cell of a tap's row in the live taps table (the second column)."""
    return str(page.locator(f"tr[data-tap-id='{tap_id}'] td").nth(1).inner_text())


def test_log_in_and_see_a_gate_tap_appear_live(browser: Any, served: ServedIssuer, gates: dict[str, Gate]) -> None:
    with served.client("operator") as operator:  # the lake has titles; the museum (site 3) has only its slug
        assert operator.patch("/v1/sites/west-lake", json={"title": "西湖", "title_en": "West Lake"}).is_success
    page = login(browser, served)
    assert page.url.endswith("/console/city") and page.locator("#city-table").count() == 1
    cookie = next(c for c in page.context.cookies() if c["name"] == "cp_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert page.evaluate("document.cookie").find("cpt_") == -1  # no script can read the token
    page.goto(served.url + "/console/live?site=1")
    wait_js(page, "document.body.dataset.stream === 'open'", what="the live stream to open")
    other = gates["museum-a"].tap(_code(served, product="annual", sites=["zhejiang-museum"]), NOW + 5)
    gates["museum-a"].upload()  # another site: filtered out
    tap = gates["lake-in"].tap(_code(served, product="annual", sites=["west-lake"]), NOW + 10)
    gates["lake-in"].upload()
    started = time.monotonic()
    wait_js(page, f"!!document.querySelector('tr[data-tap-id=\"{tap}\"]')", timeout=5, what="the tap to appear")
    waited = time.monotonic() - started
    assert page.locator(f"tr[data-tap-id='{other}']").count() == 0
    assert "lake-in" in page.locator(f"tr[data-tap-id='{tap}']").inner_text()
    print(f"tap shown {waited:.2f} s after its upload was acknowledged")
    # The site is named as the rest of the console names it — its title, not the number taps carry.
    assert site_cell(page, tap) == "西湖"
    assert page.locator("#live-taps tbody td:nth-child(2)").all_inner_texts() == ["西湖"]  # not "1"
    assert page.locator("#live-taps thead th").nth(1).inner_text() == "景点"

    # In English: the English title; a site with no title, its slug. (Every site's, unfiltered.)
    page.goto(served.url + "/console/lang?to=en&back=/console/live")
    wait_js(page, "document.body.dataset.stream === 'open'", what="the live stream to reopen")
    lake = gates["lake-in-2"].tap(_code(served, product="annual", sites=["west-lake"]), NOW + 20)
    museum = gates["museum-b"].tap(_code(served, product="annual", sites=["zhejiang-museum"]), NOW + 25)
    gates["lake-in-2"].upload()
    gates["museum-b"].upload()
    wait_js(page, f"!!document.querySelector('tr[data-tap-id=\"{museum}\"]')", timeout=5, what="the museum's tap")
    wait_js(page, f"!!document.querySelector('tr[data-tap-id=\"{lake}\"]')", timeout=5, what="the lake's tap")
    assert (site_cell(page, lake), site_cell(page, museum)) == ("West Lake", "zhejiang-museum")
    cells = page.locator("#live-taps tbody td:nth-child(2)").all_inner_texts()
    assert not [c for c in cells if c.isdigit()], cells  # no bare site number anywhere in the table


def code_cells(page: Any, tap_id: str) -> list[tuple[str, str | None]]:
    """The 产品 / 结果 / 原因 cells of a tap's row (columns 4–6): (what they say, the code on hover)."""
    cells = page.locator(f"tr[data-tap-id='{tap_id}'] td")
    return [(str(cells.nth(i).inner_text()), cells.nth(i).get_attribute("title")) for i in (3, 4, 5)]


def test_live_taps_name_products_decisions_and_reasons_in_the_operators_language(
        browser: Any, served: ServedIssuer, gates: dict[str, Gate]) -> None:
    """Taps carry codes (annual, allow, deny, expired); the operator reads the wallet's product names, 通过 / 拒绝 and
    the gate's reason messages, in Chinese or English, with the code on hover, and the filters name them too."""
    gate = gates["lake-in"]
    page = login(browser, served)
    page.goto(served.url + "/console/lang?to=zh&back=/console/live")
    wait_js(page, "document.body.dataset.stream === 'open'", what="the live stream to open")
    allowed = gate.tap(_code(served, product="annual", sites=["west-lake"]), NOW + 10)
    expired = gate.tap(_code(served, product="annual", sites=["west-lake"], valid_from=NOW - 3 * 86_400,
                             valid_to=NOW - 2 * 86_400), NOW + 11)
    gate.upload()
    for tap in (allowed, expired):
        wait_js(page, f"!!document.querySelector('tr[data-tap-id=\"{tap}\"]')", timeout=5, what="the taps")
    assert code_cells(page, allowed) == [("景点年卡", "annual"), ("通过", "allow"), ("", None)]
    assert code_cells(page, expired) == [("景点年卡", "annual"), ("拒绝", "deny"), ("凭证已过期", "expired")]
    products = page.locator("select[name=product] option")
    assert "景点年卡" in products.all_inner_texts() and "annual" not in products.all_inner_texts()
    assert page.locator("select[name=product] option", has_text="景点年卡").get_attribute("value") == "1"
    decisions = page.locator("select[name=decision] option")
    assert decisions.all_inner_texts() == ["全部", "通过", "拒绝"]
    assert [decisions.nth(i).get_attribute("value") for i in (1, 2)] == ["allow", "deny"]

    page.goto(served.url + "/console/lang?to=en&back=/console/live?decision=deny")
    wait_js(page, "document.body.dataset.stream === 'open'", what="the live stream to reopen")
    again = gate.tap(_code(served, product="annual", sites=["west-lake"], valid_from=NOW - 3 * 86_400,
                           valid_to=NOW - 2 * 86_400), NOW + 20)
    gate.upload()
    wait_js(page, f"!!document.querySelector('tr[data-tap-id=\"{again}\"]')", timeout=5, what="the English tap")
    assert code_cells(page, again) == [("Annual scenic pass", "annual"), ("Denied", "deny"),
                                       ("Pass expired", "expired")]
    assert page.locator("select[name=decision] option[selected]").inner_text() == "Denied"
    assert "Annual scenic pass" in page.locator("select[name=product] option").all_inner_texts()


def test_acknowledge_an_incident(browser: Any, served: ServedIssuer, gates: dict[str, Gate]) -> None:
    with served.client("issuer") as issuer:
        slot = issuer.post("/v1/venues/zhejiang-museum/slots",
                           json={"starts_at": NOW, "ends_at": NOW + 7200, "capacity": 10}).json()
        code = issuer.post("/v1/reservations", json={"slot_id": slot["id"], "party": 1}).json()["code"]
    gates["museum-a"].tap(code, NOW + 100)
    gates["museum-b"].tap(code, NOW + 150)
    gates["museum-a"].upload()
    gates["museum-b"].upload()
    page = login(browser, served)
    page.goto(served.url + "/console/lang?to=zh&back=/console/incidents")  # an operator working in Chinese
    row = page.locator("#incidents tbody tr", has=page.locator("[data-kind=double_use]"))
    assert row.count() == 1 and "museum-a, museum-b" in row.inner_text()
    assert "重复使用" in row.inner_text() and "单次票证被多次使用：入场 2 次" in row.inner_text()
    assert page.locator("#incidents th").first.inner_text() == "最近一次"  # the order the rows are in
    button = row.locator("button")
    assert button.inner_text() == "确认" and button.bounding_box()["height"] < 40  # one line, not 确/认
    page.goto(served.url + "/console/lang?to=en&back=/console/incidents")
    assert "Double use" in row.inner_text() and "persons admitted on a party of 1" in row.inner_text()
    row.locator("input[name=note]").fill("guard sent to gate B")
    row.locator("button").click()
    page.wait_for_url("**/console/incidents?notice=*")
    assert page.locator("#incidents [data-kind=double_use]").count() == 0  # open only
    page.goto(served.url + "/console/incidents?all=1")
    assert "guard sent to gate B" in page.locator("#incidents").inner_text()
    [stored] = served.issuer.store.stored_incidents()
    operator_id = served.tokens["operator"].split("_")[1]
    assert stored.acked_by == operator_id and stored.ack_note == "guard sent to gate B"
    deadline = time.monotonic() + 10  # the audit row is written once the answer has gone out
    while not any(e.path.endswith("/ack") and e.actor == operator_id and e.status == 303
                  for e in served.issuer.store.audit_log(limit=20)):
        assert time.monotonic() < deadline, "the acknowledgement was not audited"
        time.sleep(0.05)


def test_revoke_a_pass_and_see_the_gate_decide_otherwise(browser: Any, served: ServedIssuer,
                                                         gates: dict[str, Gate]) -> None:
    gate = gates["lake-in"]
    code = _code(served, product="annual", sites=["west-lake"])
    credential = decide(code, gate.ledger, gate.ledger.context(), NOW).credential
    assert credential is not None and decide(code, gate.ledger, gate.ledger.context(), NOW).allowed
    sync(served, gate)
    page = login(browser, served)
    page.goto(served.url + f"/console/passes?q={credential.id.hex()}")
    page.locator("#revoke-form input[name=reason]").fill("reported stolen")
    page.locator("#revoke-form button").click()
    page.wait_for_url("**/console/passes?q=*")
    assert "reported stolen" in page.locator("#pass-status").inner_text()
    def receipt() -> str:
        row = page.locator("#receipts tbody tr").filter(has=page.get_by_text("lake-in", exact=True))
        return str(row.inner_text())

    assert "尚未收到" in receipt()  # not yet: the gate is still at its old ledger sequence
    sync(served, gate)  # the gate fetches its delta and reports its new ledger sequence
    page.reload()
    assert "已收到吊销" in receipt()
    refused = decide(code, gate.ledger, gate.ledger.context(), NOW + 60)
    assert not refused.allowed and refused.reason == Reason.REVOKED


def test_edit_a_sites_capacity_and_the_gates_next_decision_uses_it(browser: Any, served: ServedIssuer,
                                                                  gates: dict[str, Gate]) -> None:
    gate = gates["lake-in"]
    codes = [_code(served, product="annual", sites=["west-lake"]) for _ in range(2)]
    gate.tap(codes[0], NOW)
    page = login(browser, served)
    page.goto(served.url + "/console/venues")
    form = page.locator("#site-west-lake")
    form.locator("input[name=capacity]").fill("1")
    form.locator("button").click()
    page.wait_for_url("**/console/venues?notice=*")
    assert page.locator("#site-west-lake input[name=capacity]").input_value() == "1"
    sync(served, gate)
    assert gate.ledger.context().site.capacity == 1
    refused = decide(codes[1], gate.ledger, gate.ledger.context(), NOW + 30)
    assert not refused.allowed and refused.reason == Reason.SITE_FULL


def test_register_a_group_follow_it_across_two_sites_and_find_it_in_an_emergency(
        browser: Any, served: ServedIssuer, gates: dict[str, Gate]) -> None:
    page = login(browser, served)
    page.goto(served.url + "/console/groups")
    form = page.locator("#register-group")
    for name, value in (("agency", "钱塘旅行社"), ("guide", "李导"), ("contact", "+86 139 0000 0000"),
                        ("party", "15"), ("price", "30")):
        form.locator(f"input[name={name}]").fill(value)
    form.locator("select[name=stop0_site]").select_option("west-lake")
    form.locator("input[name=stop0_from]").fill("2027-01-15T16:00")
    form.locator("input[name=stop0_to]").fill("2027-01-15T17:00")
    form.locator("select[name=stop1_site]").select_option("zhejiang-museum")
    form.locator("input[name=stop1_from]").fill("2027-01-15T17:30")
    form.locator("input[name=stop1_to]").fill("2027-01-15T18:30")
    form.locator("button").click()
    page.wait_for_load_state()
    assert "below the threshold" in page.locator("p.notice").inner_text()  # 30 yuan: an unreasonably cheap tour
    [group] = served.issuer.store.groups()
    assert [s.planned_from for s in group.stops] == [NOW, NOW + 5400] and group.party == 15
    codes = page.locator("#group-codes code").all_inner_texts()  # shown once, for the agency to hand out
    assert len(codes) == 2 and all(c.startswith("CP") for c in codes)

    gates["lake-in"].tap(codes[0], NOW + 300)
    gates["lake-in"].upload()
    page.goto(served.url + f"/console/groups/{group.id}")
    assert "west-lake" in page.locator("#group-where").inner_text()
    gates["museum-a"].tap(codes[1], NOW + 5500)
    gates["museum-a"].upload()
    page.reload()
    assert "zhejiang-museum" in page.locator("#group-where").inner_text()
    timeline = page.locator("#timeline tbody tr").all_inner_texts()
    assert len(timeline) == 2 and "lake-in" in timeline[0] and "museum-a" in timeline[1]
    assert page.locator("#timeline tbody td:nth-child(5)").all_inner_texts() == ["通过", "通过"]  # not "allow"
    assert page.locator("#timeline tbody td:nth-child(5) span").first.get_attribute("title") == "allow"
    assert page.locator("#timeline tbody td:nth-child(4)").all_inner_texts() == ["入园", "入园"]  # not "entry"
    assert page.locator("#timeline tbody td:nth-child(4) span").first.get_attribute("title") == "entry"
    assert "15/15" in page.locator("#stops").inner_text()

    # The emergency question: which groups are inside the museum now?
    page.goto(served.url + "/console/groups")
    page.locator("#emergency select[name=site]").select_option("zhejiang-museum")
    page.locator("#emergency button").click()
    page.wait_for_url("**/console/groups?site=zhejiang-museum")
    assert page.locator("#groups tbody tr").all_inner_texts()[0].startswith(group.id)
    page.locator("#emergency select[name=site]").select_option("west-lake")
    page.locator("#emergency button").click()
    page.wait_for_url("**/console/groups?site=west-lake")
    assert page.locator("#groups tbody tr").count() == 0


def test_a_token_without_the_operator_role_sees_and_does_nothing(browser: Any, served: ServedIssuer) -> None:
    for role in ("auditor", "issuer", "technician"):
        page = login(browser, served, role)
        assert page.url.endswith("/console/login") and page.locator(".notice.error").count() == 1
        page.context.add_cookies([{"name": "cp_console", "value": served.tokens[role],
                                   "url": served.url + "/console/"}])
        for path in ("city", "live", "incidents", "devices", "passes", "venues", "groups"):
            answer = page.goto(served.url + f"/console/{path}")
            assert answer is not None and answer.status == 403, (role, path)
            assert page.locator("#city-table, #incidents, #devices, #groups").count() == 0
    assert served.issuer.store.sites()[0].capacity is None


def test_a_form_posted_from_another_site_is_refused(browser: Any, served: ServedIssuer) -> None:
    page = login(browser, served)  # the operator is logged in, in this browser
    evil = "http://evil.example/"
    page.route(evil, lambda route: route.fulfill(status=200, content_type="text/html", body=(
        f'<form id="f" method="post" action="{served.url}/console/sites/west-lake">'
        '<input name="capacity" value="1"><input name="title" value="pwned"><input name="csrf" value="guess">'
        '</form><script>document.getElementById("f").submit()</script>')))
    page.goto(evil)
    deadline = time.monotonic() + 15  # the forged post arrives once the evil page has run its script
    while not (refused := [e for e in served.issuer.store.audit_log(limit=20)
                           if e.path == "/console/sites/west-lake"]):
        assert time.monotonic() < deadline, "the forged post never reached the issuer"
        time.sleep(0.05)
    assert all(e.status in (303, 403) for e in refused), refused  # no session (SameSite) or no CSRF token
    site = served.issuer.store.sites()[0]
    assert site.capacity is None and site.title != "pwned"
