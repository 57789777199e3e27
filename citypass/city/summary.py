"""The end of the day: what the operator reads from the issuer, next to what the gates saw.

:func:`fetch_reports` reads the issuer's reports over HTTP (``/v1/activity``, ``/v1/incidents``,
``/v1/sites/{site}/occupancy``, ``/v1/journeys``); :func:`print_summary` shows them as tables — taps per
gate, denials by reason, incidents, occupancy per site, journeys — followed by the checks of
:mod:`citypass.city.checks`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from citypass.bench.report import percentile
from citypass.city.checks import Check, Facts
from citypass.city.http import ok, ok_list
from citypass.credential.reasons import Reason

JOURNEY_ROWS = 12


@dataclass(frozen=True)
class Reports:
    activity: list[dict[str, Any]]
    incidents: list[dict[str, Any]]
    occupancy: dict[str, dict[str, Any]]
    journeys: list[dict[str, Any]]
    site_names: dict[int, str]


def fetch_reports(reports: httpx.Client, entry_sites: list[str]) -> Reports:
    return Reports(
        activity=ok_list(reports.get("/v1/activity")),
        incidents=ok_list(reports.get("/v1/incidents")),
        occupancy={s: ok(reports.get(f"/v1/sites/{s}/occupancy")) for s in entry_sites},
        journeys=ok_list(reports.get("/v1/journeys")),
        site_names={s["number"]: s["name"] for s in ok_list(reports.get("/v1/sites"))},
    )


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col)
    return table


def print_summary(console: Console, facts: Facts, reports: Reports, checks: list[Check],
                  relay_s: dict[str, list[float]]) -> None:
    """``relay_s``: each gate's frame → relay times (s) of its openings, measured by its daemon."""
    names = reports.site_names
    taps = _table("Taps per gate (at the gate / at the issuer)", "gate", "site", "taps", "at issuer", "allowed",
                  "denied", "persons", "annulled", "frame→relay p50 / max")
    by_gate = {row["gate_id"]: row for row in reports.activity}
    for g in facts.gates:
        row = by_gate.get(g.gate_id, {})
        times = relay_s.get(g.gate_id) or []
        relay = f"{percentile(times, 0.5) * 1000:.1f} / {max(times) * 1000:.1f} ms" if times else "—"
        taps.add_row(g.gate_id, g.site, str(facts.gate_taps.get(g.gate_id, 0)), str(row.get("taps", 0)),
                     str(row.get("allowed", 0)), str(row.get("denied", 0)), str(row.get("persons", 0)),
                     str(row.get("annulled", 0)), relay)
    console.print(taps)

    denials = Counter[str]()
    for row in reports.activity:
        denials.update(row["denials"])
    reasons = _table("Denials by reason / 拒绝原因", "reason", "中文", "English", "count")
    for code, count in sorted(denials.items(), key=lambda kv: (-kv[1], kv[0])):
        reason = Reason(code)
        reasons.add_row(code, reason.zh, reason.en, str(count))
    console.print(reasons)

    incidents = _table("Incidents found by the issuer", "kind", "gates", "detail")
    for i in reports.incidents:
        incidents.add_row(i["kind"], ", ".join(i["gate_ids"]), i["detail"])
    console.print(incidents)

    occupancy = _table("Occupancy per site", "site", "inside now", "entries today")
    for site, occ in reports.occupancy.items():
        occupancy.add_row(site, str(occ["inside"]), str(occ["entries_today"]))
    console.print(occupancy)

    journeys = _table("Journeys (GET /v1/journeys)", "credential", "from", "to", "fare (fen)", "state")
    for j in reports.journeys[:JOURNEY_ROWS]:
        state = "complete" if j["complete"] else j["flag"] or "in progress"
        journeys.add_row(j["credential_id"][:8], names.get(j["from_site"], "—"), names.get(j["to_site"], "—"),
                         "—" if j["fare"] is None else str(j["fare"]), state)
    if len(reports.journeys) > JOURNEY_ROWS:
        journeys.caption = f"… and {len(reports.journeys) - JOURNEY_ROWS} more"
    console.print(journeys)

    table = _table("Checks", "", "claim", "evidence")
    for c in checks:
        table.add_row("[green]✓[/]" if c.ok else "[red]✗[/]", c.name, c.detail)
    console.print(table)
    passed = sum(c.ok for c in checks)
    console.print(f"checks: {passed}/{len(checks)} passed")
