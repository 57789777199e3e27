"""Quarantined uploads as incidents: what devices said that the issuer would not believe.

Ingest (:mod:`citypass.issuer.ingest`) keeps aside, acknowledges and never counts an event that fails
validation — a tap at a site or direction its device is not registered for, five hundred persons on one
annual pass, an annulment of another gate's tap — and one whose event id another device used first. A gate
that does that is broken, misconfigured or lying, and an operator must hear of it: :func:`quarantine_incidents`
turns those records into :class:`~citypass.issuer.incidents.Incident` rows, beside the ones found in the taps.

Kinds (stable codes, like the others):

=======================  ==========================================================================
``quarantined_upload``   events of one device that failed validation (the first reason is shown)
``id_collision``         events whose event id another device had used first (id squatting, or a bug)
=======================  ==========================================================================

Events of one kind from one device at most ``group_window_s`` apart (by the issuer's receiving time) are one
incident, so a gate resending a broken batch all day is one row, not thousands.

    >>> bad = [QuarantineRecord("e1", "t1", "tap", "lake-in", 100, "tap: site 1 is not the site lake-in is "
    ...                         "registered at (2)"),
    ...        QuarantineRecord("e2", "t2", "tap", "lake-in", 160, "tap: 500 persons on one annual tap (at most 1)")]
    >>> [(i.kind, i.gate_ids, i.tap_ids) for i in quarantine_incidents(bad)]
    [('quarantined_upload', ('lake-in',), ('t1', 't2'))]
    >>> quarantine_incidents(bad)[0].detail
    '2 event(s) from lake-in quarantined; first: tap: site 1 is not the site lake-in is registered at (2)'
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from citypass.issuer.incidents import Incident
from citypass.issuer.records import QuarantineRecord

QUARANTINED_UPLOAD = "quarantined_upload"
ID_COLLISION = "id_collision"
KINDS = (QUARANTINED_UPLOAD, ID_COLLISION)


def quarantine_incidents(records: Iterable[QuarantineRecord], *, group_window_s: int = 3600) -> list[Incident]:
    """One incident per burst of quarantined events of one kind from one device, by ``received_at``."""
    if group_window_s < 0:
        raise ValueError("the window must not be negative")
    by_source: dict[tuple[str, str], list[QuarantineRecord]] = defaultdict(list)
    for record in records:
        kind = ID_COLLISION if record.collision else QUARANTINED_UPLOAD
        by_source[(kind, record.device_id or "-")].append(record)
    found = []
    for (kind, device), group in by_source.items():
        group.sort(key=lambda r: (r.received_at, r.event_id))
        burst: list[QuarantineRecord] = []
        for record in group:
            if burst and record.received_at - burst[-1].received_at > group_window_s:
                found.append(_incident(kind, device, burst))
                burst = []
            burst.append(record)
        if burst:
            found.append(_incident(kind, device, burst))
    return sorted(found, key=lambda i: (i.first_at, i.kind, i.incident_id))


def _incident(kind: str, device: str, burst: list[QuarantineRecord]) -> Incident:
    what = "quarantined" if kind == QUARANTINED_UPLOAD else "reused another device's event id"
    return Incident(
        kind=kind, credential_id=None, tap_ids=tuple(dict.fromkeys(r.tap_id for r in burst)),
        gate_ids=(device,), sites=(), first_at=burst[0].received_at, last_at=burst[-1].received_at,
        detail=f"{len(burst)} event(s) from {device} {what}; first: {burst[0].error}",
    )
