"""A gate's view of a snapshot in memory (:func:`ledger_for`) and one decision at a site of it (:func:`at`)."""

from __future__ import annotations

from citypass.credential import LedgerSnapshot, TrustList
from citypass.gate.decision import Decision, GateContext, decide
from citypass.gate.memory_ledger import MemoryLedger
from citypass.gate.policy import Direction, GatePolicy
from tests.helpers.codes import NOW, World


def ledger_for(world: World, trust: TrustList | None = None, *, revoked: frozenset[bytes] = frozenset(),
               revoked_holders: frozenset[bytes] = frozenset(), issued_at: int = NOW - 3600,
               **site_changes: object) -> MemoryLedger:
    sites = tuple(s.model_copy(update=site_changes) for s in world.sites.values())
    snap = LedgerSnapshot(1, issued_at, trust or world.trust(), b"", sites, revoked, revoked_holders,
                          world.root.public)
    return MemoryLedger(snap)


def at(ledger: MemoryLedger, world: World, site: str, code: str, now: int = NOW, policy: GatePolicy | None = None,
       direction: Direction = Direction.ENTRY) -> Decision:
    settings = ledger.snapshot.site(world.sites[site].name)
    assert settings is not None
    ctx = GateContext("g1", settings, direction)
    decision = decide(code, ledger, ctx, now, policy)
    ledger.record(decision, settings.number)
    return decision
