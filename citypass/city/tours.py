"""Tour groups in the city act: two agencies register a group each, through the issuer's API, with itineraries.

* **Group A** (party of 5, a fair price) — West Lake now, then the Zhejiang Museum: its guide shows the West Lake
  pass at the scenic gate in the opening phase and the museum pass at museum lane 2 once lane 1's link is back.
* **Group B** (party of 8, a price below the threshold: registered with a warning) — due at Lingyin 45 minutes
  ago, where it never shows up: by the end of the act it is overdue.

At the end the director reads both groups back (``GET /v1/groups/{id}``) — where each is, persons admitted per
stop, whether it is overdue — and checks that A was followed to the museum and B is overdue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from citypass.city.checks import Check
from citypass.city.http import ok
from citypass.city.script import LANE2, PHASES, SCENIC, Card, Visit, allow
from citypass.credential import parse

PARTY_A, PARTY_B = 5, 8


@dataclass(frozen=True)
class Tours:
    on_time: str                # group A's id
    late: str                   # group B's id
    passes: tuple[Card, Card]   # group A's passes: West Lake, the museum
    warning: str | None         # what the issuer said about group B's price


def register_tours(api: httpx.Client, now: int) -> Tours:
    a = ok(api.post("/v1/groups", json={
        "agency": "西湖国际旅行社", "guide": "王导游", "contact": "+86 138 0000 0001", "party": PARTY_A,
        "price_per_person_fen": 18_000, "itinerary": [
            {"site": "west-lake", "planned_from": now - 600, "planned_to": now + 3000},
            {"site": "zhejiang-museum", "planned_from": now, "planned_to": now + 5400}]}))
    b = ok(api.post("/v1/groups", json={
        "agency": "钱塘旅行社", "guide": "李导游", "contact": "+86 139 0000 0002", "party": PARTY_B,
        "price_per_person_fen": 2_900, "itinerary": [
            {"site": "lingyin", "planned_from": now - 45 * 60, "planned_to": now + 1800}]}))
    cards = tuple(Card(code, parse(code).credential.id.hex(), PARTY_A) for code in a["codes"])
    assert len(cards) == 2
    return Tours(a["id"], b["id"], (cards[0], cards[1]), b["warning"])


def tour_visits(tours: Tours) -> list[list[Visit]]:
    """Group A's two admissions, per phase (opening: West Lake; link back: the museum, at lane 2)."""
    phases: list[list[Visit]] = [[] for _ in PHASES]
    phases[0].append(Visit(f"tour group A (party of {PARTY_A})", SCENIC, tours.passes[0], allow(PARTY_A), "clean",
                           walkers=PARTY_A))
    phases[3].append(Visit(f"tour group A at its next stop (party of {PARTY_A})", LANE2, tours.passes[1],
                           allow(PARTY_A), "clean", walkers=PARTY_A))
    return phases


def print_tours(console: Console, groups: list[dict[str, Any]], names: dict[int, str]) -> None:
    table = Table(title="Tour groups (GET /v1/groups/{id})", title_justify="left")
    for column in ("group", "agency", "party", "where now", "admitted per stop", "progress", "overdue", "warning"):
        table.add_column(column)
    for g in groups:
        where = "not seen yet" if g["last_site"] is None else \
            f"{names.get(g['last_site'], g['last_site'])}{' (inside)' if g['inside'] else ''}"
        per_stop = ", ".join(f"{names.get(s['site'], s['site'])} {s['admitted']}/{g['party']}" for s in g["stops"])
        table.add_row(g["id"], g["agency"], str(g["party"]), where, per_stop, f"{g['visited']}/{g['stops_total']}",
                      f"[red]{g['overdue_s'] // 60} min[/]" if g["overdue"] else "no", g["warning"] or "")
    console.print(table)


def check_tours(groups: list[dict[str, Any]], tours: Tours, names: dict[int, str]) -> Check:
    by_id = {g["id"]: g for g in groups}
    a, b = by_id.get(tours.on_time, {}), by_id.get(tours.late, {})
    followed = (names.get(a.get("last_site", -1)) == "zhejiang-museum" and a.get("inside") is True
                and [s["admitted"] for s in a.get("stops", [])] == [PARTY_A, PARTY_A] and not a.get("overdue"))
    late = b.get("overdue") is True and b.get("last_site") is None
    passed = followed and late and bool(tours.warning)
    return Check("tour groups followed gate by gate; the missing one overdue", passed,
                 f"group A at {names.get(a.get('last_site', -1), '?')}, {a.get('visited', 0)}/2 stops; "
                 f"group B overdue: {'yes' if late else 'no'} ({b.get('overdue_s', 0) // 60} min); "
                 f"price warning at registration: {'yes' if tours.warning else 'no'}")
