"""The console's pages: server-rendered HTML (:mod:`.markup`), one small bundled script (htmx and the live stream,
``web/console``), served by the issuer under ``/console/``. See docs/console.md.

Every page needs a session (:mod:`.session`); every POST checks its CSRF token and answers with a redirect
(303) back to the page, so reloading never repeats an action. What changes state goes through the same
service code as the API (revocations, site edits, group registration) and is written to the audit log by
the API's audit middleware, with the operator's token id as actor and a note saying what was done.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from citypass.credential.sites import SiteKind, SiteSettings
from citypass.errors import CityPassError, Conflict, InvalidInput, NotFound
from citypass.issuer import bookings, groups
from citypass.issuer.api.deps import Principal, Services, get_services, note
from citypass.issuer.api.venues import edit_site
from citypass.issuer.console import incidenttexts, views
from citypass.issuer.console import session as sessions
from citypass.issuer.console.charts import occupancy_svg
from citypass.issuer.console.codetexts import (
    DECISIONS,
    PRODUCT_CODES,
    code_cell,
    codes_json,
    decision_name,
    direction_name,
    kind_name,
    product_code,
    product_name,
    reason_text,
)
from citypass.issuer.console.markup import Child, Safe, esc, join, raw, table, tag
from citypass.issuer.console.session import ConsoleDenied, Session
from citypass.issuer.console.sitenames import site_title, site_titles, title_of
from citypass.issuer.console.texts import text
from citypass.issuer.groups import status as group_status
from citypass.issuer.service import IssueError
from citypass.issuer.tap_records import TapRecord
from citypass.issuer.tokens import authenticate

router = APIRouter(include_in_schema=False)

#: Only this origin's script and style; no inline script, no framing, forms post back here only.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HTMX_CONFIG = '{"includeIndicatorStyles": false, "allowEval": false, "allowScriptTags": false}'
NAV = ("city", "live", "incidents", "devices", "passes", "venues", "groups")
#: The live stream looks for new taps this often (seconds), and closes after this long (the browser reconnects).
STREAM_POLL_S = 0.25
STREAM_MAX_S = 300.0
#: Groups listed per page (keyset paging by group id).
GROUPS_PER_PAGE = 200


def _time(at: int | None, offset_minutes: int = 480) -> str:
    if at is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at + offset_minutes * 60))


def _hm(at: int, offset_minutes: int = 480) -> str:
    return time.strftime("%H:%M", time.gmtime(at + offset_minutes * 60))


def words(lang: str) -> Callable[[str], str]:
    """The page's words in ``lang``: ``t = words(lang); t("inside")``."""
    return lambda key: text(key, lang)


def _html(body: Safe, status: int = 200) -> HTMLResponse:
    return HTMLResponse(str(body), status_code=status, headers={
        "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def layout(request: Request, s: Session | None, lang: str, here: str, title: str, *content: Child,
           status: int = 200, notice: str | None = None) -> HTMLResponse:
    t = words(lang)
    nav: list[Child] = [tag("span", t("brand"), class_="brand")]
    if s is not None:
        nav += [tag("a", t(key), href=f"/console/{key}", class_="here" if key == here else None) for key in NAV]
        nav.append(tag("form", tag("input", type="hidden", name="csrf", value=s.csrf, void=True),
                       tag("button", t("logout"), type="submit"), method="post", action="/console/logout",
                       class_="inline"))
    other = "en" if lang == "zh" else "zh"
    nav.append(tag("a", t("lang_other"), href=f"/console/lang?to={other}&back={request.url.path}"))
    notice = notice or request.query_params.get("notice")
    page = join(
        raw("<!doctype html>"),
        tag("html",
            tag("head", tag("meta", charset="utf-8", void=True),
                tag("meta", name="viewport", content="width=device-width, initial-scale=1", void=True),
                tag("meta", name="htmx-config", content=HTMX_CONFIG, void=True),
                tag("title", f"{title} — {t('brand')}"),
                tag("link", rel="stylesheet", href="/console/static/assets/console.css", void=True),
                tag("script", src="/console/static/assets/console.js", type="module")),
            tag("body", tag("header", nav),
                tag("main", tag("h1", title), tag("p", notice, class_="notice") if notice else None, *content),
                data_page=here, data_lang=lang),
            lang="zh-CN" if lang == "zh" else "en"))
    return _html(page, status)


def _hidden(s: Session) -> Safe:
    return tag("input", type="hidden", name="csrf", value=s.csrf, void=True)


def _field(label: str, name: str, value: Any = None, **attrs: Any) -> Safe:
    return tag("label", label, tag("input", name=name, value=value, void=True, **attrs))


def _back(path: str, notice: str | None = None, **params: Any) -> RedirectResponse:
    query = {k: v for k, v in params.items() if v not in (None, "")}
    if notice:
        query["notice"] = notice
    return RedirectResponse(path + ("?" + urlencode(query) if query else ""), status_code=303)


def _services(request: Request) -> Services:
    return get_services(request)


def _need(request: Request) -> Session:
    s = sessions.current(request, _services(request))
    if s is None:
        raise ConsoleDenied(401, "login")
    return s


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def _post(request: Request, act: Callable[[Session, dict[str, str]], Response]) -> Response:
    """A console POST: session, CSRF, then ``act`` in a worker thread (it touches the store). What the service
    refuses (bad input, unknown, conflicting) is shown as a page saying why."""
    form = await _form(request)
    s = await run_in_threadpool(_need, request)
    sessions.check_csrf(request, s, form.get("csrf"))
    try:
        return await run_in_threadpool(act, s, form)
    except (InvalidInput, NotFound, Conflict) as exc:
        note(request, f"refused: {exc}")
        return error_page(request, exc)


# -- login, logout, language -------------------------------------------------------------------------------
@router.get("/console")
def console_root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=308)


@router.get("/console/")
def console_home() -> RedirectResponse:
    return RedirectResponse("/console/city", status_code=303)


def _login_page(request: Request, nonce: str, error: bool = False, status: int = 200) -> HTMLResponse:
    lang = sessions.lang_of(request)
    t = words(lang)
    form = tag("form", tag("p", t("login_hint")),
               tag("p", t("bad_token"), class_="notice error") if error else None,
               tag("input", type="hidden", name="nonce", value=nonce, void=True),
               _field(t("token"), "token", type="password", autocomplete="off", required=True, size=60),
               tag("button", t("login"), type="submit"), method="post", action="/console/login",
               class_="card login")
    response = layout(request, None, lang, "login", t("login"), form, status=status)
    response.set_cookie(sessions.LOGIN_COOKIE, nonce, httponly=True, samesite="strict", path="/console",
                        secure=request.url.scheme == "https")
    return response


@router.get("/console/login")
def login_form(request: Request, notice: str = "") -> HTMLResponse:
    return _login_page(request, request.cookies.get(sessions.LOGIN_COOKIE) or os.urandom(16).hex())


@router.post("/console/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    request.state.actor = "console-login"
    nonce = request.cookies.get(sessions.LOGIN_COOKIE)
    sessions.check_origin(request)
    if not nonce or form.get("nonce") != nonce:
        raise ConsoleDenied(403, "csrf")
    services = _services(request)
    token = form.get("token", "").strip()
    record = await run_in_threadpool(authenticate, services.store, token) if token else None
    if record is None or record.role not in sessions.ROLES:
        note(request, "console login refused")
        return _login_page(request, os.urandom(16).hex(), error=True, status=403)
    request.state.principal = Principal(record.id, record.role, record.device_id)
    note(request, "console login")
    response = RedirectResponse("/console/city", status_code=303)
    sessions.set_session(response, request, token)
    return response


@router.post("/console/logout")
async def logout(request: Request) -> Response:
    def act(s: Session, form: dict[str, str]) -> Response:
        note(request, "console logout")
        response = RedirectResponse("/console/login", status_code=303)
        sessions.clear_session(response)
        return response

    return await _post(request, act)


@router.get("/console/lang")
def choose_lang(request: Request, to: str = "zh", back: str = "/console/city") -> RedirectResponse:
    target = back if back.startswith("/console/") and "//" not in back else "/console/city"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(sessions.LANG_COOKIE, "en" if to == "en" else "zh", samesite="strict", path="/console")
    return response


# -- City now ----------------------------------------------------------------------------------------------
def _fill_bar(fill: float | None) -> Safe:
    if fill is None:
        return esc("—")
    width = max(0, min(100, round(fill * 100)))
    color = "#b3261e" if fill >= 0.9 else "#0b5cad"
    return join(tag("svg", tag("rect", x=0, y=0, width=100, height=10, rx=5, fill="#e4e8ee", void=True),
                    tag("rect", x=0, y=0, width=width, height=10, rx=5, fill=color, void=True),
                    width=100, height=10, viewBox="0 0 100 10", role="img", aria_label=f"{width}%"),
                f" {round(fill * 100)}%")


def city_table(s: Session, rows: list[views.SiteNow]) -> Safe:
    t = words(s.lang)
    body = [[tag("a", r.site.name, href=f"/console/city?site={r.site.name}"),
             (r.site.title_en or r.site.title) if s.lang == "en" else r.site.title,
             (r.inside, "num"), (r.site.capacity if r.site.capacity else "—", "num"), _fill_bar(r.fill),
             (r.entries_today, "num")] for r in rows]
    return tag("div", table([t("site"), t("title"), (t("inside"), "num"), (t("capacity"), "num"), t("fill"),
                             (t("entries_today"), "num")], body, id="city-table"),
               hx_get="/console/city?fragment=1", hx_trigger="every 5s", hx_swap="outerHTML")


@router.get("/console/city")
def city(request: Request, site: str | None = None, fragment: int = 0, notice: str = "") -> Response:
    s = _need(request)
    services = _services(request)
    now = services.now()
    rows = views.city_now(services.store, now)
    if fragment:
        return _html(city_table(s, rows))
    t = words(s.lang)
    chosen = [r for r in rows if r.site.name == site] or rows[:4]
    charts = [tag("figure", tag("figcaption", f"{r.site.name} {r.site.title} — {t('curve')}"),
                  occupancy_svg(list(r.curve), capacity=r.site.capacity, start=r.midnight, end=r.midnight + 86_400,
                                utc_offset_minutes=r.site.utc_offset_minutes, label=f"{r.site.name} {t('curve')}"))
              for r in chosen]
    summary = tag("p", f"{t('open_incidents')}: ", tag("a", services.store.open_incident_count(),
                                                       href="/console/incidents", id="open-incidents"))
    return layout(request, s, s.lang, "city", text("city", s.lang), summary, city_table(s, rows),
                  tag("section", charts, class_="charts"))


# -- Live taps ---------------------------------------------------------------------------------------------
def _tap_json(tap: TapRecord) -> str:
    """One tap of the live stream (``event: tap``): its site as a number, named by the ``sites`` event; its product,
    decision and reason as codes, named by the page's ``data-codes`` table (:func:`.codetexts.codes_json`)."""
    return json.dumps({"tap_id": tap.tap_id, "at": tap.at, "site": tap.site, "gate_id": tap.gate_id,
                       "product": product_code(tap.product) or None, "decision": tap.decision,
                       "reason": tap.reason, "persons": tap.persons, "credential_id": tap.credential_id})


def _sites_json(sites: Iterable[SiteSettings], lang: str) -> str:
    """The live stream's ``sites`` event: by site number, the title the operator reads (in the session's language,
    the slug where there is none) and the slug. Sent once as the stream opens — and again only if a tap names a
    site it does not hold — so each tap carries just its site's number; the page shows the number itself only for
    a site the issuer does not know."""
    return json.dumps({str(x.number): {"title": site_title(x, lang), "name": x.name} for x in sites},
                      ensure_ascii=False, separators=(",", ":"))


def _matches(tap: TapRecord, site: int | None, gate: str | None, product: int | None, decision: str | None) -> bool:
    return ((site is None or tap.site == site) and (gate is None or tap.gate_id == gate)
            and (product is None or tap.product == product) and (decision is None or tap.decision == decision))


@router.get("/console/live")
def live(request: Request, site: str = "", gate: str = "", product: str = "", decision: str = "",
         notice: str = "") -> Response:
    s = _need(request)
    t = words(s.lang)
    q = request.query_params
    services = _services(request)
    site_options = [tag("option", t("any"), value="")] + [
        tag("option", f"{x.number} {x.name}", value=x.number, selected=q.get("site") == str(x.number))
        for x in services.store.sites()]
    form = tag("form",
               tag("label", t("site"), tag("select", site_options, name="site")),
               _field(t("gate"), "gate", q.get("gate")),
               tag("label", t("product"), tag("select", [tag("option", t("any"), value="")] + [
                   tag("option", product_name(number, s.lang), value=number, title=code,
                       selected=q.get("product") == str(number))
                   for number, code in PRODUCT_CODES.items()], name="product")),
               tag("label", t("decision"), tag("select", [tag("option", t("any"), value="")] + [
                   tag("option", decision_name(d, s.lang), value=d, title=d, selected=q.get("decision") == d)
                   for d in DECISIONS],
                   name="decision")),
               tag("button", t("filter"), type="submit"), method="get", action="/console/live", class_="card")
    sites = services.store.sites()
    offset = sites[0].utc_offset_minutes if sites else 480  # the city's sites share one time zone
    stream = "/console/live/stream?" + urlencode({k: q[k] for k in ("site", "gate", "product", "decision")
                                                  if q.get(k)})
    headers = [t("time"), t("site"), t("gate"), t("product"), t("decision"), t("reason"), t("persons"),
               t("credential")]
    return layout(request, s, s.lang, "live", t("live"), form,
                  tag("p", f"{t('taps_seen')}: ", tag("span", "0", id="live-count")),
                  table(headers, [], id="live-taps", data_stream=stream, data_utc_offset=offset,
                        data_codes=codes_json(s.lang)))


@router.get("/console/live/stream")
async def live_stream(request: Request, site: int | None = None, gate: str | None = None,
                      product: int | None = None, decision: str | None = None) -> StreamingResponse:
    s = await run_in_threadpool(_need, request)
    services = _services(request)
    gate = gate or None
    decision = decision if decision in ("allow", "deny") else None

    async def events() -> AsyncIterator[bytes]:
        # Taps are found by the time the issuer received them, re-reading the last second's ids each time (an
        # index-only read): a batch that committed late, with an earlier receiving time, is still picked up.
        received = services.now() - 2  # a tap uploaded just before the page opened still shows
        seen: dict[str, int] = {}
        started = time.monotonic()
        named = await run_in_threadpool(services.store.sites)
        asked = {x.number for x in named}  # site numbers looked up already: an unknown one is read for once
        yield f"retry: 1000\n\nevent: sites\ndata: {_sites_json(named, s.lang)}\n\n".encode()
        while time.monotonic() - started < STREAM_MAX_S and not await request.is_disconnected():
            ids = await run_in_threadpool(services.store.tap_ids_received, received - 1)
            new = [tap_id for _, tap_id in ids if tap_id not in seen]
            out = []
            if new:
                taps = await run_in_threadpool(services.store.taps_by_id, new)
                shown = []
                for tap in sorted(taps, key=lambda t: (t.received_at or 0, t.tap_id)):
                    seen[tap.tap_id] = tap.received_at or 0
                    if _matches(tap, site, gate, product, decision):
                        shown.append(tap)
                unknown = {tap.site for tap in shown} - asked
                if unknown:  # a site added since the stream opened is named before its taps (read once per number)
                    asked |= unknown
                    named = await run_in_threadpool(services.store.sites)
                    if unknown & {x.number for x in named}:
                        asked |= {x.number for x in named}
                        out.append(f"event: sites\ndata: {_sites_json(named, s.lang)}\n\n")
                out += [f"event: tap\nid: {tap.tap_id}\ndata: {_tap_json(tap)}\n\n" for tap in shown]
            if ids:
                received = max(received, ids[-1][0])
                seen = {k: v for k, v in seen.items() if v >= received - 1}
            yield ("".join(out) if out else ": idle\n\n").encode()
            await asyncio.sleep(STREAM_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# -- Incidents ---------------------------------------------------------------------------------------------
@router.get("/console/incidents")
def incidents(request: Request, all: int = 0, notice: str = "") -> Response:
    s = _need(request)
    t = words(s.lang)
    store = _services(request).store
    found = store.stored_incidents(open_only=not all, limit=500, latest_first=True)  # the 500 most recently active
    titles = site_titles(store.sites(), s.lang)
    rows = []
    for item in found:
        i = item.incident
        if item.acked_at is None:
            action: Child = tag("form", _hidden(s), tag("input", name="note", placeholder=t("note"), void=True),
                                tag("button", t("ack"), type="submit"), method="post",
                                action=f"/console/incidents/{i.incident_id}/ack", class_="inline")
        else:
            action = tag("span", f"{t('acked')} {_time(item.acked_at)} {item.ack_note or ''}", class_="ok")
        when: list[Child] = [_time(i.last_at)]
        if i.first_at != i.last_at:
            when += [tag("br", void=True), tag("span", f"{t('since')} {_time(i.first_at)}", class_="muted")]
        detail = incidenttexts.describe(i, s.lang, titles)
        rows.append([when, tag("span", incidenttexts.kind_name(i.kind, s.lang), class_="kind", title=i.kind,
                               data_kind=i.kind),
                     i.credential_id or "—", ", ".join(i.gate_ids),
                     tag("span", detail, title="\n".join(x for x in (i.detail if detail != i.detail else "",
                                                                    ", ".join(i.tap_ids)) if x)), action])
    toggle = tag("a", t("show_open") if all else t("show_all"), href="/console/incidents" + ("" if all else "?all=1"))
    return layout(request, s, s.lang, "incidents", t("incidents"), tag("p", toggle),
                  table([t("latest"), t("kind"), t("credential"), t("gates"), t("detail"), ""], rows, id="incidents"))


@router.post("/console/incidents/{incident_id}/ack")
async def ack(request: Request, incident_id: str) -> Response:
    def act(s: Session, form: dict[str, str]) -> Response:
        services = _services(request)
        _, changed = services.store.ack_incident(incident_id, services.now(), s.principal.token_id,
                                                 form.get("note", "")[:500])
        note(request, f"acknowledged {incident_id}" + ("" if changed else " (already)") + f": {form.get('note', '')}")
        return _back("/console/incidents", text("saved", s.lang))

    return await _post(request, act)


# -- Devices -----------------------------------------------------------------------------------------------
@router.get("/console/devices")
def devices(request: Request, notice: str = "") -> Response:
    s = _need(request)
    t = words(s.lang)
    services = _services(request)
    titles = site_titles(services.store.sites(), s.lang)
    rows = []
    for r in views.devices(services.store, services.now()):
        h = r.health
        state = {"ok": ("online", "ok"), "stale": ("stale", "bad"), "never_seen": ("never", "warn"),
                 "retired": ("none", "muted")}[r.status]
        rows.append([tag("code", r.device.id), title_of(titles, r.device.site),
                     code_cell(r.device.direction, direction_name(r.device.direction, s.lang)),
                     tag("span", t(state[0]), class_=state[1]), _time(h.last_seen if h else None), r.link or "—",
                     (h.ledger_seq if h and h.ledger_seq is not None else "—", "num"),
                     (h.outbox_backlog if h and h.outbox_backlog is not None else "—", "num"),
                     (f"{h.clock_offset_s:+.1f} s" if h and h.clock_offset_s is not None else "—", "num"),
                     r.version or "—"])
    headers = [t("device"), t("site"), t("direction"), t("status"), t("last_seen"), t("link"),
               (t("ledger_seq"), "num"), (t("backlog"), "num"), (t("clock_offset"), "num"), t("version")]
    return layout(request, s, s.lang, "devices", t("devices"),
                  tag("p", f"{t('ledger_seq')}: {services.store.ledger_seq()}"),
                  table(headers, rows, id="devices"))


# -- Passes ------------------------------------------------------------------------------------------------
@router.get("/console/passes")
def passes(request: Request, q: str = "", notice: str = "") -> Response:
    s = _need(request)
    t = words(s.lang)
    services = _services(request)
    search = tag("form", _field(t("pass_ref"), "q", q, size=40), tag("button", t("lookup"), type="submit"),
                 method="get", action="/console/passes", class_="card")
    content: list[Child] = [search]
    found = views.find_pass(services.store, q[:64]) if q else None
    if q and found is None:
        content.append(tag("p", t("no_pass"), class_="notice error"))
    if found is not None:
        d = found.details
        product = str(d.get("product") or "")  # its code, as the credential describes itself (``annual``)
        facts = table([t("credential"), t("product"), t("valid"), t("status")], [[
            tag("code", found.credential_id), code_cell(product, product_name(product or None, s.lang)),
            f"{_time(d.get('valid_from'))} → {_time(d.get('valid_to'))}",  # type: ignore[arg-type]
            tag("span", f"{t('revoked')} ({found.revocation.reason}) seq {found.revocation_seq}", class_="bad",
                id="pass-status") if found.revocation else tag("span", t("not_revoked"), class_="ok",
                                                               id="pass-status")]])
        content.append(facts)
        if found.revocation is None:
            content.append(tag("form", _hidden(s), _field(t("reason"), "reason", required=True, maxlength=200),
                               tag("button", t("revoke"), type="submit", class_="danger"), method="post",
                               action=f"/console/passes/{found.credential_id}/revoke", class_="card",
                               id="revoke-form"))
        if d.get("holder_id"):
            content.append(tag("form", _hidden(s), _field(t("reason"), "reason", required=True, maxlength=200),
                               tag("button", t("revoke_holder"), type="submit", class_="danger"), method="post",
                               action=f"/console/passes/{found.credential_id}/revoke-holder", class_="card"))
        titles = site_titles(services.store.sites(), s.lang)
        receipts = [[tag("code", g.device.id), title_of(titles, g.device.site),
                     (g.ledger_seq if g.ledger_seq is not None else "—", "num"),
                     tag("span", f"{t('received')} ({t('reported')} {_time(g.reported_at)})", class_="ok")
                     if g.received else
                     tag("span", t("pending") if found.revocation else "—", class_="warn")] for g in found.gates]
        content.append(tag("h2", t("gates")))
        content.append(table([t("gate"), t("site"), (t("ledger_seq"), "num"), t("status")], receipts, id="receipts"))
    return layout(request, s, s.lang, "passes", t("passes"), *content)


@router.post("/console/passes/{credential_id}/revoke")
async def revoke(request: Request, credential_id: str) -> Response:
    def act(s: Session, form: dict[str, str]) -> Response:
        services = _services(request)
        reason = form.get("reason", "").strip()[:200] or "console"
        cred = services.issuer.revoke(credential_id, services.now(), reason)
        note(request, f"revoked {cred.hex()}: {reason}")
        return _back("/console/passes", text("saved", s.lang), q=cred.hex())

    return await _post(request, act)


@router.post("/console/passes/{credential_id}/revoke-holder")
async def revoke_holder(request: Request, credential_id: str) -> Response:
    def act(s: Session, form: dict[str, str]) -> Response:
        services = _services(request)
        details = services.store.credential_details(services.issuer.credential_ref(credential_id)) or {}
        holder = details.get("holder_id")
        if not isinstance(holder, str):
            raise IssueError("this pass is not bound to a phone")
        reason = form.get("reason", "").strip()[:200] or "console"
        services.store.revoke_holder(bytes.fromhex(holder), services.now(), reason)
        note(request, f"revoked holder {holder} (via {credential_id}): {reason}")
        return _back("/console/passes", text("saved", s.lang), q=credential_id)

    return await _post(request, act)


# -- Venues, sites and slots -------------------------------------------------------------------------------
@router.get("/console/venues")
def venues(request: Request, notice: str = "") -> Response:
    s = _need(request)
    t = words(s.lang)
    services = _services(request)
    now = services.now()
    cards: list[Child] = []
    for site in services.store.sites():
        edit = tag("form", _hidden(s), tag("strong", f"{site.number} {site.name} ({site.kind.value})"),
                   tag("br", void=True),
                   _field(t("title"), "title", site.title, maxlength=100),
                   _field(t("title_en"), "title_en", site.title_en, maxlength=100),
                   _field(t("capacity"), "capacity", site.capacity, type="number", min=1),
                   _field(t("opens"), "opens", site.opens, pattern=r"\d\d:\d\d", size=5),
                   _field(t("closes"), "closes", site.closes, pattern=r"\d\d:\d\d", size=5),
                   _field(t("passback"), "passback_minutes", site.passback_minutes, type="number", min=0, max=1440),
                   tag("label", t("passback_hard"), tag("input", type="checkbox", name="passback_hard", value="1",
                                                        checked=site.passback_hard, void=True)),
                   tag("button", t("edit"), type="submit"), method="post", action=f"/console/sites/{site.name}",
                   class_="card", id=f"site-{site.name}")
        cards.append(edit)
        if site.kind in bookings.VENUE_KINDS:
            slots = services.store.slots(site.number, since=now - 86_400, limit=50)
            rows = [[_time(x.starts_at), _time(x.ends_at), (x.capacity, "num"), (x.booked, "num"),
                     _fill_bar(x.booked / x.capacity if x.capacity else None)] for x in slots]
            add = tag("form", _hidden(s), _field(t("starts"), "starts", type="datetime-local", required=True),
                      _field(t("ends"), "ends", type="datetime-local", required=True),
                      _field(t("capacity"), "capacity", type="number", min=1, required=True),
                      tag("button", t("add_slot"), type="submit"), method="post",
                      action=f"/console/venues/{site.name}/slots", class_="inline")
            cards.append(tag("div", tag("h2", f"{site.name} — {t('slots')}"),
                             table([t("starts"), t("ends"), (t("capacity"), "num"), (t("booked"), "num"), t("fill")],
                                   rows), add, class_="card"))
    create = tag("form", _hidden(s), tag("strong", t("add_venue")), tag("br", void=True),
                 _field(t("name"), "name", pattern="[a-z0-9][a-z0-9_-]{0,47}", required=True),
                 tag("label", t("kind"), tag("select", [tag("option", k, value=k) for k in ("museum", "scenic")],
                                             name="kind")),
                 _field(t("title"), "title", maxlength=100), _field(t("capacity"), "capacity", type="number", min=1),
                 tag("button", t("add_venue"), type="submit"), method="post", action="/console/venues", class_="card")
    return layout(request, s, s.lang, "venues", t("venues"), create, *cards)


def _local_input(value: str, offset_minutes: int = 480) -> int:
    """A ``datetime-local`` field (site local time) as Unix seconds."""
    try:
        parsed = time.strptime(value[:16], "%Y-%m-%dT%H:%M")
    except ValueError:
        raise IssueError(f"not a date and time: {value!r}") from None
    import calendar
    return calendar.timegm(parsed) - offset_minutes * 60


@router.post("/console/venues")
async def add_venue(request: Request) -> Response:
    def act(s: Session, form: dict[str, str]) -> Response:
        services = _services(request)
        from citypass.credential.sites import SiteSettings
        kind = SiteKind(form.get("kind", "museum"))
        if kind not in bookings.VENUE_KINDS:
            raise IssueError("a venue is a museum or a scenic spot")
        capacity = int(form["capacity"]) if form.get("capacity") else None
        settings = SiteSettings(number=services.store.next_site_number(), name=form.get("name", ""), kind=kind,
                                title=form.get("title", ""), capacity=capacity)
        services.issuer.add_site(settings, services.now())
        note(request, f"added site {settings.name} = {settings.number}")
        return _back("/console/venues", text("saved", s.lang))

    return await _post(request, act)


@router.post("/console/sites/{name}")
async def edit_site_form(request: Request, name: str) -> Response:
    def act(s: Session, form: dict[str, str]) -> Response:
        services = _services(request)
        changes: dict[str, object] = {
            "title": form.get("title", ""), "title_en": form.get("title_en", "")[:100],
            "capacity": int(form["capacity"]) if form.get("capacity") else None,
            "opens": form.get("opens") or None, "closes": form.get("closes") or None,
            "passback_minutes": int(form.get("passback_minutes") or 0),
            "passback_hard": form.get("passback_hard") == "1",
        }
        updated = edit_site(services, name, changes)
        note(request, f"edited site {updated.name}: " + ", ".join(f"{k}={v}" for k, v in sorted(changes.items())))
        return _back("/console/venues", text("saved", s.lang))

    return await _post(request, act)


@router.post("/console/venues/{name}/slots")
async def add_slot(request: Request, name: str) -> Response:
    def act(s: Session, form: dict[str, str]) -> Response:
        services = _services(request)
        site = bookings.venue(services.issuer, name)
        slot = bookings.add_slot(services.issuer, name, _local_input(form.get("starts", ""), site.utc_offset_minutes),
                                 _local_input(form.get("ends", ""), site.utc_offset_minutes),
                                 int(form.get("capacity") or 0), services.now())
        note(request, f"added slot {slot.id} at venue {slot.venue} for {slot.capacity}")
        return _back("/console/venues", text("saved", s.lang))

    return await _post(request, act)


# -- Groups ------------------------------------------------------------------------------------------------
@router.get("/console/groups")
def group_list(request: Request, site: str = "", after: str = "", notice: str = "") -> Response:
    s = _need(request)
    t = words(s.lang)
    services = _services(request)
    now = services.now()
    _, minutes = groups.settings(services.issuer)
    names = site_titles(services.store.sites(), s.lang)
    chosen = next((x for x in services.store.sites() if site in (x.name, str(x.number))), None) if site else None
    listed = (services.store.groups(site=chosen.number, inside=True, limit=1000) if chosen
              else services.store.groups(after=after or None, limit=GROUPS_PER_PAGE))
    rows = []
    for g in listed:
        st = group_status(g, now, minutes * 60)
        where = f"{title_of(names, g.last_site)} {_hm(g.last_at)}" if g.last_site is not None and g.last_at \
            else "—"
        rows.append([tag("a", g.id, href=f"/console/groups/{g.id}"), g.agency, f"{g.guide} {g.contact}",
                     (g.party, "num"), f"{g.price_fen / 100:.2f}", where, f"{st.visited}/{len(g.stops)}",
                     tag("span", f"{t('overdue')} {st.overdue_s // 60} min", class_="bad") if st.overdue else "",
                     tag("span", g.warning or "", class_="warn")])
    emergency = tag("form", tag("label", t("emergency"), tag("select", [tag("option", t("any"), value="")] + [
        tag("option", f"{x.number} {x.name}", value=x.name, selected=chosen is not None and x.number == chosen.number)
        for x in services.store.sites()], name="site")), tag("button", t("lookup"), type="submit"), method="get",
        action="/console/groups", class_="card", id="emergency")
    register = tag(
        "form", _hidden(s), tag("strong", t("register")), tag("br", void=True),
        _field(t("agency"), "agency", required=True, maxlength=100), _field(t("guide"), "guide", required=True),
        _field(t("contact"), "contact", required=True), _field(t("party"), "party", type="number", min=1, max=99,
                                                              required=True),
        _field(t("price"), "price", type="number", min=0, step="0.01", required=True), tag("br", void=True),
        [join(tag("label", f"{t('stop')} {i + 1}", tag("select", [tag("option", "—", value="")] + [
            tag("option", f"{x.number} {x.name}", value=x.name) for x in services.store.sites()],
            name=f"stop{i}_site")), _field(t("starts"), f"stop{i}_from", type="datetime-local"),
              _field(t("ends"), f"stop{i}_to", type="datetime-local"), tag("br", void=True)) for i in range(4)],
        tag("button", t("register"), type="submit"), method="post", action="/console/groups", class_="card",
        id="register-group")
    headers = [t("groups"), t("agency"), t("guide"), (t("party"), "num"), t("price"), t("where"), t("progress"),
               t("overdue"), t("warning")]
    more = tag("p", tag("a", "→", href=f"/console/groups?after={listed[-1].id}", id="groups-next")) \
        if not chosen and len(listed) == GROUPS_PER_PAGE else None
    overdue = groups.overdue(services.issuer, now, limit=200)
    late = tag("p", f"{t('overdue')}: ", join(*[join(tag("a", st.group.id, href=f"/console/groups/{st.group.id}"),
                                                      f" ({st.overdue_s // 60} min) ") for st in overdue[:20]]),
               class_="bad", id="overdue-groups") if overdue else None
    return layout(request, s, s.lang, "groups", t("groups"), emergency, late, table(headers, rows, id="groups"), more,
                  register)


@router.post("/console/groups")
async def register_group(request: Request) -> Response:
    def act(s: Session, form: dict[str, str]) -> Response:
        services = _services(request)
        issuer = services.issuer
        stops = []
        for i in range(20):
            site_ref = form.get(f"stop{i}_site")
            if not site_ref:
                continue
            number = issuer.site_number(site_ref)
            offset = next(x.utc_offset_minutes for x in issuer.store.sites() if x.number == number)
            stops.append(groups.Stop(number, _local_input(form.get(f"stop{i}_from", ""), offset),
                                     _local_input(form.get(f"stop{i}_to", ""), offset)))
        try:
            party, price = int(form.get("party") or 0), round(float(form.get("price") or -1) * 100)
        except ValueError:
            raise IssueError("party and price are numbers") from None
        done = groups.register(issuer, agency=form.get("agency", "")[:100], guide=form.get("guide", "")[:100],
                               contact=form.get("contact", "")[:100], party=party, price_fen=price, stops=stops,
                               now=services.now())
        note(request, f"registered group {done.group.id} ({done.group.agency}, {party} persons, {len(stops)} stops)"
                      + (" with a price warning" if done.group.warning else ""))
        # Answered with the group's page itself, not a redirect: the passes' codes are shown this once (the issuer
        # keeps their ids, not their texts), for the agency to hand to the guide.
        return _group_response(request, s, done.group.id, done.codes, done.group.warning or text("saved", s.lang))

    return await _post(request, act)


@router.get("/console/groups/{group_id}")
def group_page(request: Request, group_id: str, notice: str = "") -> Response:
    return _group_response(request, _need(request), group_id)


def _group_response(request: Request, s: Session, group_id: str, codes: tuple[str, ...] = (),
                    notice: str | None = None) -> Response:
    t = words(s.lang)
    services = _services(request)
    g = services.store.group(group_id)
    _, minutes = groups.settings(services.issuer)
    st = group_status(g, services.now(), minutes * 60)
    names = site_titles(services.store.sites(), s.lang)
    stops = [[stop.stop + 1, title_of(names, stop.site), f"{_time(stop.planned_from)} → {_hm(stop.planned_to)}",
              _time(stop.first_entry_at), (f"{stop.admitted}/{g.party}", "num"),
              tag("code", stop.credential_id or "")] for stop in g.stops]
    taps = services.store.taps_of_credentials([x.credential_id for x in g.stops if x.credential_id],
                                              min(x.planned_from for x in g.stops) - 86_400,
                                              max(x.planned_to for x in g.stops) + 86_400)
    timeline = [[_time(tap.at), title_of(names, tap.site), tap.gate_id,
                 code_cell(tap.kind, kind_name(tap.kind, s.lang)),
                 code_cell(tap.decision, decision_name(tap.decision, s.lang)),
                 code_cell(tap.reason, reason_text(tap.reason, s.lang)), (tap.persons - tap.annulled, "num")]
                for tap in sorted(taps, key=lambda x: x.order)]
    facts = tag("p", f"{g.agency} · {g.guide} {g.contact} · {t('party')} {g.party} · {g.price_fen / 100:.2f} · ",
                tag("span", f"{t('overdue')} {st.overdue_s // 60} min", class_="bad", id="overdue") if st.overdue
                else "", tag("span", g.warning, class_="warn") if g.warning else "")
    last = f"{title_of(names, g.last_site)} {_time(g.last_at)}" if g.last_site is not None else "—"
    where = tag("p", f"{t('where')}: ", tag("strong", last, id="group-where"))
    shown = tag("ol", [tag("li", title_of(names, stop.site), " ", tag("code", code, class_="group-code"))
                       for stop, code in zip(g.stops, codes, strict=True)], id="group-codes") if codes else None
    return layout(request, s, s.lang, "groups", f"{t('groups')} {g.id}", facts, where, shown,
                  tag("h2", t("itinerary")),
                  table([t("stop"), t("site"), t("planned"), t("first"), (t("admitted"), "num"), t("credential")],
                        stops, id="stops"),
                  tag("h2", t("timeline")),
                  table([t("time"), t("site"), t("gate"), t("kind"), t("decision"), t("reason"), (t("persons"), "num")],
                        timeline, id="timeline"), notice=notice)


def denied_page(request: Request, exc: ConsoleDenied) -> Response:
    """What a refused console request gets: the login page (no session) or a 403 page saying why."""
    if exc.status == 401:
        return RedirectResponse("/console/login", status_code=303)
    lang = sessions.lang_of(request)
    return layout(request, None, lang, "denied", text(exc.key, lang),
                  tag("p", tag("a", text("login", lang), href="/console/login")), status=exc.status)


def error_page(request: Request, exc: CityPassError) -> Response:
    lang = sessions.lang_of(request)
    return layout(request, None, lang, "error", str(exc) or type(exc).__name__,
                  tag("p", tag("a", "←", href=request.headers.get("referer", "/console/city")
                               if (request.headers.get("referer") or "").startswith(str(request.base_url)) else
                               "/console/city")), status=422)
