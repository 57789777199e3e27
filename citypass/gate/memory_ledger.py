"""A gate ledger held in memory, built from a verified snapshot.

Used by ``citypass gate check`` (a sequence of inputs behaves like a sequence of presentations at one
gate: a single-use ticket checked twice is denied the second time) and by tests. The daemon uses the
SQLite ledger, which answers the same :class:`~citypass.gate.decision.LedgerView` questions durably.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from citypass.credential.snapshot import LedgerSnapshot
from citypass.credential.trustlist import TrustList
from citypass.gate.decision import Decision, Usage, usage_after
from citypass.gate.policy import TapKind


class MemoryLedger:
    """A :class:`~citypass.gate.decision.LedgerView` over a snapshot, with usage kept in dicts."""

    def __init__(self, snapshot: LedgerSnapshot, clock_floor: int | None = None) -> None:
        self.snapshot = snapshot
        self._usage: dict[tuple[bytes, int], Usage] = {}  # persons and passback: per credential and site
        self._tapped_in: dict[bytes, tuple[int | None, int | None]] = {}  # metro: per credential
        self._seen: set[bytes] = set()
        self._occupancy: dict[int, int] = defaultdict(int)
        self._entries: dict[bytes, list[int]] = defaultdict(list)  # admission times per credential
        self._floor = snapshot.issued_at if clock_floor is None else clock_floor

    @property
    def trust(self) -> TrustList:
        return self.snapshot.trust

    @property
    def synced_at(self) -> int | None:
        return self.snapshot.issued_at

    @property
    def clock_floor(self) -> int:
        return self._floor

    def is_revoked(self, credential_id: bytes) -> bool:
        return credential_id in self.snapshot.revoked

    def is_holder_revoked(self, holder_id: bytes) -> bool:
        return holder_id in self.snapshot.revoked_holders

    def presentation_seen(self, presentation_id: bytes) -> bool:
        return presentation_id in self._seen

    def usage(self, credential_id: bytes, site: int) -> Usage:
        # a rider taps in at one station and out at another: tap-in state is per credential only
        at, where = self._tapped_in.get(credential_id, (None, None))
        return replace(self._usage.get((credential_id, site), Usage()), tapped_in_at=at, tapped_in_site=where)

    def occupancy(self, site: int) -> int:
        return self._occupancy[site]

    def benefit_uses(self, credential_id: bytes, since: int) -> int:
        return sum(1 for at in self._entries.get(credential_id, ()) if at >= since)

    def record(self, decision: Decision, site: int) -> None:
        """Apply an allowed decision: usage, replay cache, occupancy."""
        self._floor = max(self._floor, decision.effective_now)  # every recorded tap raises the floor
        if not decision.allowed or decision.credential is None:
            return
        key = (decision.credential.id, site)
        after = usage_after(decision, self.usage(*key), site)
        self._usage[key] = after
        self._tapped_in[decision.credential.id] = (after.tapped_in_at, after.tapped_in_site)
        if decision.presentation_id is not None:
            self._seen.add(decision.presentation_id)
        if decision.kind is TapKind.ENTRY:
            self._occupancy[site] += decision.persons
            self._entries[decision.credential.id].append(decision.effective_now)
        elif decision.kind is TapKind.EXIT:
            self._occupancy[site] = max(0, self._occupancy[site] - 1)
