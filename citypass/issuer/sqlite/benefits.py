"""SQLite table for the benefit card's central count (:mod:`citypass.issuer.benefits`): one row per use.

A use is an admitted tap of a benefit card (``ref`` = ``tap:<tap id>``) or a benefit slot booked online
(``ref`` = ``booking:<reservation id>``); the ref is the primary key, so a tap uploaded twice (or over two
transports) counts once.
"""

from __future__ import annotations

from citypass.issuer.records import BenefitUse
from citypass.issuer.sqlite.connection import SqliteBase

_USE = "SELECT ref, credential_id, period_start, at, source, gate_id, site, quota FROM benefit_uses"


class BenefitTables(SqliteBase):
    def add_benefit_use(self, use: BenefitUse) -> int | None:
        """Record a use; the card's count in that period afterwards, or None when ``use.ref`` was counted before."""
        with self.write() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO benefit_uses (ref, credential_id, period_start, at, source, gate_id, site,"
                " quota) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [use.ref, use.credential_id, use.period_start, use.at, use.source, use.gate_id, use.site, use.quota],
            )
            if cur.rowcount == 0:
                return None
            row = conn.execute("SELECT count(*) FROM benefit_uses WHERE credential_id = ? AND period_start = ?",
                               [use.credential_id, use.period_start]).fetchone()
            return int(row[0])

    def benefit_use_count(self, credential_id: str, period_start: int) -> int:
        row = self.conn.execute("SELECT count(*) FROM benefit_uses WHERE credential_id = ? AND period_start = ?",
                                [credential_id, period_start]).fetchone()
        return int(row[0])

    def benefit_uses(self, credential_id: str, period_start: int) -> list[BenefitUse]:
        """The card's uses in the period, oldest first."""
        rows = self.conn.execute(f"{_USE} WHERE credential_id = ? AND period_start = ? ORDER BY at, ref",
                                 [credential_id, period_start]).fetchall()
        return [BenefitUse(*r) for r in rows]

    def benefit_overuse(self, since: int) -> list[tuple[str, int]]:
        """``(credential_id, period_start)`` of every card used more often than its quota in a period that
        ends after ``since`` (periods are at most a year: those starting in the year before ``since``)."""
        rows = self.conn.execute(
            "SELECT credential_id, period_start FROM benefit_uses WHERE period_start >= ?"
            " GROUP BY credential_id, period_start HAVING count(*) > max(quota) ORDER BY period_start, credential_id",
            [since - 366 * 86_400]).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]
