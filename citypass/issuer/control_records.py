"""The control room's records: incidents as stored (with their acknowledgement), quarter-hour tallies, tour
groups and their stops. Plain frozen dataclasses, like :mod:`citypass.issuer.records`; what the repository
returns for the console and the group API (:mod:`citypass.issuer.groups`, :mod:`citypass.issuer.watch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from citypass.issuer.incidents import Incident

#: A quarter hour, the grain of the stored occupancy tallies (seconds).
QUARTER = 900


@dataclass(frozen=True)
class StoredIncident:
    """An incident kept in the store: found at ingest (``found_at``), perhaps acknowledged by an operator.

    ``scope`` is what it was computed from — ``c:<credential id>`` or ``g:<gate id>`` — so a later tap of the
    same credential (or gate) recomputes exactly the incidents it can change."""

    incident: Incident
    scope: str
    found_at: int
    acked_at: int | None = None
    acked_by: str | None = None
    ack_note: str | None = None

    @property
    def incident_id(self) -> str:
        return self.incident.incident_id

    def to_dict(self) -> dict[str, Any]:
        return self.incident.to_dict() | {"found_at": self.found_at, "acked_at": self.acked_at,
                                          "acked_by": self.acked_by, "ack_note": self.ack_note}


@dataclass(frozen=True)
class QuarterTally:
    """Persons admitted (``entries``) and let out (``exits``) at ``site`` during the quarter hour starting at
    ``quarter`` (Unix s, a multiple of :data:`QUARTER`), annulled persons excluded."""

    site: int
    quarter: int
    entries: int
    exits: int


@dataclass(frozen=True)
class GroupStop:
    """One stop of a tour group's itinerary: a site, the planned window, the group pass issued for it, and what
    the gates said so far (persons admitted on that pass, the first admission's time)."""

    stop: int
    site: int
    planned_from: int
    planned_to: int
    credential_id: str | None = None
    admitted: int = 0
    first_entry_at: int | None = None


@dataclass(frozen=True)
class TourGroup:
    """A tour group registered by an agency. ``last_site``/``last_at``: where a gate last saw one of its passes;
    ``inside``: that tap was an admission (the group is in that site, as far as the gates know)."""

    id: str
    agency: str
    guide: str
    contact: str
    party: int
    price_fen: int
    created_at: int
    stops: tuple[GroupStop, ...]
    warning: str | None = None
    last_site: int | None = None
    last_at: int | None = None
    inside: bool = False
