"""Real gate ledgers enrolled with a served issuer, uploading their outbox over HTTP like the sync module: the
``served`` and ``gates`` fixtures of the tap-ingest and control-room tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from citypass.gate.decision import decide
from citypass.gate.ledger import GateLedger, OutboxRow
from citypass.gate.policy import Direction
from citypass.issuer.testing import ServedIssuer, served_issuer
from tests.helpers.databases import Databases

NOW = 1_800_000_000  # 2027-01-15 16:00 local
MIDNIGHT = 1_800_000_000 - 16 * 3600 + 86_400  # 2027-01-16 00:00 local


@dataclass
class Gate:
    """A real gate ledger, enrolled with the served issuer, that uploads its outbox like the sync module."""

    served: ServedIssuer
    ledger: GateLedger
    gate_id: str
    token: str

    def tap(self, code: str, at: int) -> str:
        decision = decide(code, self.ledger, self.ledger.context(), at)
        return self.ledger.record(decision, self.ledger.context(), {"decided": float(at)}).tap_id

    def rows(self) -> list[OutboxRow]:
        return self.ledger.pending(1000)

    def upload(self, rows: list[OutboxRow] | None = None, **extra: Any) -> dict[str, Any]:
        rows = self.rows() if rows is None else rows
        events = [{"event_id": r.event_id, "tap_id": r.tap_id, "kind": r.kind, "body": r.body,
                   "created_at": r.created_at} for r in rows]
        with self.served.client(token=self.token) as client:
            response = client.post("/v1/taps", json={"events": events, **extra})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        self.ledger.mark_uploaded(result["acknowledged"])
        return result


@pytest.fixture
def served(tmp_path: Path, issuer_database: Databases) -> Iterator[ServedIssuer]:
    with served_issuer(tmp_path / "issuer", now=NOW, database=issuer_database()) as s:
        yield s


@pytest.fixture
def gates(served: ServedIssuer, tmp_path: Path) -> Iterator[dict[str, Gate]]:
    made: dict[str, Gate] = {}
    snapshot = served.issuer.export(NOW)
    root = served.issuer.root_key().public
    layout = {"lake-in": (1, Direction.ENTRY), "lake-in-2": (1, Direction.ENTRY), "lake-out": (1, Direction.EXIT),
              "museum-a": (3, Direction.ENTRY), "museum-b": (3, Direction.ENTRY),
              "metro-a-in": (4, Direction.ENTRY), "metro-b-out": (5, Direction.EXIT)}
    with served.client("technician") as tech, served.client() as anonymous:
        for gate_id, (site, direction) in layout.items():
            assert tech.post("/v1/devices", json={"id": gate_id, "site": site, "direction": direction.value}).is_success
            secret = tech.post("/v1/enrollments", json={"device_id": gate_id}).json()["token"]
            token = anonymous.post("/v1/enrollments/redeem", json={"token": secret}).json()["api_token"]
            ledger = GateLedger.open(tmp_path / f"{gate_id}.sqlite3", root=root)
            ledger.load_snapshot(snapshot)
            ledger.set_identity(gate_id, site, direction)
            made[gate_id] = Gate(served, ledger, gate_id, token)
    yield made
    for gate in made.values():
        gate.ledger.close()


def mint_code(served: ServedIssuer, **body: Any) -> str:
    with served.client("issuer") as issuer:
        response = issuer.post("/v1/passes", json=body)
        assert response.status_code == 201, response.text
        code: str = response.json()["code"]
        return code


