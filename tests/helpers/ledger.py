"""Shared by the gate-ledger tests: a real issuer with codes of every product, and small ledger helpers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from citypass.credential.claims import Mode
from citypass.credential.keys import SigningKey, VerifyKey
from citypass.credential.reasons import Reason
from citypass.credential.verifier import Verdict
from citypass.gate.decision import Decision, GateContext
from citypass.gate.ledger import GateLedger, LedgerConfig
from citypass.gate.policy import Direction
from citypass.issuer.home import IssuerHome
from citypass.issuer.service import Issuer

NOW = 1_800_000_000
SITES = [("west-lake", "scenic"), ("museum", "museum"), ("station-a", "metro"), ("station-b", "metro")]


@dataclass
class Issued:
    issuer: Issuer
    root: VerifyKey
    codes: dict[str, str]
    holder: SigningKey
    tmp: Path

    def export(self, now: int = NOW) -> bytes:
        return self.issuer.export(now)

    def ledger(self, config: LedgerConfig | None = None) -> GateLedger:
        return GateLedger.open(self.tmp / "ledger.sqlite3", root=self.root, config=config)


@pytest.fixture
def issued(tmp_path: Path) -> Issued:
    issuer = Issuer.init(IssuerHome(tmp_path / "issuer"), SITES, now=NOW)
    holder, lost = SigningKey.generate(), SigningKey.generate()
    codes = {
        "annual": issuer.mint_annual(["west-lake"], now=NOW),
        "group": issuer.mint_group("museum", 3, now=NOW),
        "transit": issuer.mint_transit("rider-1", Mode.METRO, now=NOW, valid_to=NOW + 86_400 * 30),
        "revoked": issuer.mint_annual(["west-lake"], now=NOW),
        "bound": issuer.mint_annual(["west-lake"], now=NOW, holder=holder.public),
        "lost_phone": issuer.mint_annual(["west-lake"], now=NOW, holder=lost.public),
    }
    issuer.revoke(codes["revoked"], now=NOW)
    issuer.revoke_holder(lost.public, now=NOW)
    return Issued(issuer, issuer.root_key().public, codes, holder, tmp_path)


def ctx_for(ledger: GateLedger, site: str, direction: Direction = Direction.ENTRY) -> GateContext:
    settings = ledger.site(site)
    assert settings is not None
    return GateContext("gate-1", settings, direction)


def dump(ledger: GateLedger) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table: what "unchanged" means."""
    conn = ledger.db.conn
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}


def denied_at(effective: int) -> Decision:
    return Decision(False, Reason.NOT_CITYPASS, Verdict(False, Reason.NOT_CITYPASS), effective)
