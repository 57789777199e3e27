"""Computing ledger deltas from the change log (the wire format is :mod:`citypass.credential.delta`).

A gate that installed snapshot ``S`` asks for the changes since ``S``; the issuer answers with one
signed delta from ``S`` to some ``T > S`` (at most ``limit`` changes, so the gate may have to ask
again) — or says a snapshot is needed:

* the gate is at a sequence the log does not start from (older than the log, or from another
  issuer: ``since`` greater than the issuer's own sequence);
* the very next change is a trust-list change (a key added or rotated): only a snapshot carries the
  root-signed trust list. A delta stops *before* such a change, so the gate catches up to it first.

Revocations are netted per id over the range (revoked then lifted is "unrevoked"; the gate's tables
treat both as idempotent). When sites changed in the range, the delta carries the site list as of
its own ``seq``.
"""

from __future__ import annotations

from citypass.credential.delta import LedgerDelta
from citypass.errors import Conflict
from citypass.issuer.repository import LedgerRepository

MAX_CHANGES = 100_000


class SnapshotRequired(Conflict):
    """No delta can bring a gate from ``since`` forward: it must install a snapshot."""


def build_delta(store: LedgerRepository, since: int, now: int, limit: int = 10_000) -> LedgerDelta | None:
    """The delta from ``since``, or None when the gate is already current."""
    current = store.ledger_seq()
    if since == current:
        return None
    if since > current or since < store.changes_logged_from():
        raise SnapshotRequired(f"no delta from seq {since} (issuer at {current}, log from "
                               f"{store.changes_logged_from()}): fetch a snapshot")
    changes = store.changes_since(since, max(1, min(limit, MAX_CHANGES)))
    if not changes or changes[0].seq != since + 1:
        raise SnapshotRequired(f"the change log has a gap after seq {since}: fetch a snapshot")
    ids: dict[str, dict[str, bool]] = {"credential": {}, "holder": {}}
    sites_changed = False
    seq = since
    for change in changes:
        if change.kind == "trust":
            break
        if change.kind in ("revoke", "unrevoke"):
            ids["credential"][change.ref] = change.kind == "revoke"
        elif change.kind in ("revoke_holder", "unrevoke_holder"):
            ids["holder"][change.ref] = change.kind == "revoke_holder"
        elif change.kind == "site":
            sites_changed = True
        seq = change.seq
    if seq == since:
        raise SnapshotRequired(f"the trust list changed at seq {since + 1}: fetch a snapshot")
    sites = None
    if sites_changed:
        later = {c.ref for c in store.changes_since(seq, MAX_CHANGES, kinds=("site",))}
        sites = tuple(s for s in store.sites() if s.name not in later)

    def pick(kind: str, revoked: bool) -> frozenset[bytes]:
        return frozenset(bytes.fromhex(ref) for ref, state in ids[kind].items() if state is revoked)

    return LedgerDelta(
        base_seq=since, seq=seq, issued_at=now,
        revoked=pick("credential", True), unrevoked=pick("credential", False),
        revoked_holders=pick("holder", True), unrevoked_holders=pick("holder", False), sites=sites,
    )
