"""PostgreSQL table for the benefit card's central count (:mod:`citypass.issuer.benefits`): one row per use — the
twin of :mod:`citypass.issuer.sqlite.benefits`. A use's ref is the primary key (a tap uploaded twice, by any
worker or node, counts once); a card's uses are counted under a transaction lock on the card, so two workers
recording uses of one card at the same moment each get the count with the other's use in it or after it —
never both the same number."""

from __future__ import annotations

from citypass.issuer.postgres.control import LOCK_CREDENTIAL, lock_keys
from citypass.issuer.postgres.ledger import LedgerTables
from citypass.issuer.records import BenefitUse

_USE = "SELECT ref, credential_id, period_start, at, source, gate_id, site, quota FROM benefit_uses"
_COUNT = "SELECT count(*) FROM benefit_uses WHERE credential_id = %s AND period_start = %s"


class BenefitTables(LedgerTables):
    def add_benefit_use(self, use: BenefitUse) -> int | None:
        with self.write() as conn:
            lock_keys(conn, LOCK_CREDENTIAL, [use.credential_id])
            cur = conn.execute(
                "INSERT INTO benefit_uses (ref, credential_id, period_start, at, source, gate_id, site, quota)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (ref) DO NOTHING",
                [use.ref, use.credential_id, use.period_start, use.at, use.source, use.gate_id, use.site, use.quota])
            if cur.rowcount == 0:
                return None
            row = conn.execute(_COUNT, [use.credential_id, use.period_start]).fetchone()
        assert row is not None
        return int(row[0])

    def benefit_use_count(self, credential_id: str, period_start: int) -> int:
        return int(self.scalar(_COUNT, [credential_id, period_start]))

    def benefit_uses(self, credential_id: str, period_start: int) -> list[BenefitUse]:
        rows = self.fetchall(f"{_USE} WHERE credential_id = %s AND period_start = %s ORDER BY at, ref",
                             [credential_id, period_start])
        return [BenefitUse(*r) for r in rows]

    def benefit_overuse(self, since: int) -> list[tuple[str, int]]:
        rows = self.fetchall(
            "SELECT credential_id, period_start FROM benefit_uses WHERE period_start >= %s"
            " GROUP BY credential_id, period_start HAVING count(*) > max(quota) ORDER BY period_start, credential_id",
            [since - 366 * 86_400])
        return [(str(r[0]), int(r[1])) for r in rows]
