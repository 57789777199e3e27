"""A booking killed between taking a slot's places and signing its code leaves a ``held`` reservation: its
places come back once the hold is older than signing can take, and operators see it, held then expired."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citypass.issuer.bookings import HOLD_TTL_S
from citypass.issuer.testing import ServedIssuer, served_issuer
from tests.helpers.databases import Databases

NOW = 1_800_000_000


@pytest.fixture
def served(tmp_path: Path, issuer_database: Databases) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path / "issuer", now=NOW, database=issuer_database()) as s:
        yield s


def test_a_hold_left_by_a_killed_booking_expires_and_is_listed(served: ServedIssuer) -> None:
    with served.client("issuer") as issuer:
        slot = issuer.post("/v1/venues/zhejiang-museum/slots",
                           json={"starts_at": NOW + 3600, "ends_at": NOW + 7200, "capacity": 3}).json()
    # What a SIGKILL between hold_places() and activate_reservation() leaves in the store: the places taken,
    # status "held", no code. (The store is the served issuer's own SQLite file.)
    served.issuer.store.hold_places("r_00000000deadbeef", slot["id"], 3, NOW)
    with served.client("issuer") as issuer, served.client("operator") as operator:
        full = issuer.post("/v1/reservations", json={"slot_id": slot["id"], "party": 1})
        assert full.status_code == 409  # still young: it may be a booking being signed right now
        [held] = operator.get("/v1/reservations", params={"status": "held"}).json()
        assert (held["id"], held["status"], held["party"], held["code"]) == ("r_00000000deadbeef", "held", 3, None)

        served.clock.now = NOW + HOLD_TTL_S + 1
        listed = issuer.get("/v1/venues/zhejiang-museum/slots").json()
        assert [s["available"] for s in listed if s["id"] == slot["id"]] == [3]
        booked = issuer.post("/v1/reservations", json={"slot_id": slot["id"], "party": 3})
        assert booked.status_code == 201 and booked.json()["status"] == "active"
        assert operator.get("/v1/reservations", params={"status": "held"}).json() == []
        [expired] = operator.get("/v1/reservations", params={"status": "expired"}).json()
        assert expired["id"] == "r_00000000deadbeef" and expired["cancelled_at"] == NOW + HOLD_TTL_S + 1
        assert issuer.get("/v1/reservations/r_00000000deadbeef").json()["status"] == "expired"
        assert issuer.post("/v1/reservations", json={"slot_id": slot["id"], "party": 1}).status_code == 409
    with served.client("technician") as technician:
        assert technician.get("/v1/reservations").status_code == 403
