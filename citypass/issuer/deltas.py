"""Computing ledger deltas from the change log (the wire format is :mod:`citypass.credential.delta`).

A gate that installed snapshot ``S`` asks for the changes since ``S``; the issuer answers with one
signed delta from ``S`` to some ``T > S`` (at most ``limit`` changes, so the gate may have to ask
again) — or says a snapshot is needed:

* the gate is at a sequence the log does not start from (older than the log, or from another
  issuer: ``since`` greater than the issuer's own sequence);
* the very next change is a trust-list change (a key added or rotated): only a snapshot carries the
  root-signed trust list. A delta stops *before* such a change, so the gate catches up to it first.

Revocations are netted per id over the range (revoked then lifted is "unrevoked"; the gate's tables
treat both as idempotent). Sites travel **incrementally**: the delta carries only the sites added or
changed in its range (``site_updates``), each with its settings as the issuer holds them now, never the
whole table — a city of 70,000 sites is 2.5 MB of settings even untitled, and a delta must fit an MQTT packet (1 MiB).
A site changed again after the delta's ``seq`` is sent with its newest settings; the later delta that
names it carries the same ones again, so a gate that applies every delta ends with the table a fresh
snapshot has. The site updates of one delta stay under :data:`SITE_UPDATE_BYTES`: a range that changes
more sites ends the delta before the change that would pass it, and the gate asks again.

    >>> from pathlib import Path
    >>> from citypass.issuer.store import IssuerStore
    >>> from citypass.credential.sites import SiteSettings
    >>> store = IssuerStore(Path("deltas-example.sqlite3"))
    >>> for n in range(1, 4):
    ...     store.add_site(SiteSettings(number=n, name=f"stop-{n}"), at=n)
    >>> since = store.ledger_seq()
    >>> store.add_site(SiteSettings(number=1001, name="stop-1001"), at=2000)
    >>> [s.name for s in build_delta(store, since, now=2001).site_updates]
    ['stop-1001']
"""

from __future__ import annotations

from citypass.credential.cose import encode_cbor
from citypass.credential.delta import LedgerDelta
from citypass.errors import Conflict
from citypass.issuer.repository import LedgerRepository

MAX_CHANGES = 100_000
#: Most bytes of site settings one delta carries (CBOR). With the 20,000 ids of an MQTT delta (≤ 17 bytes each)
#: this keeps a delta well under a 1 MiB broker packet; a site's settings are 60–900 bytes.
SITE_UPDATE_BYTES = 384 * 1024


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
    end = since
    first_named: dict[str, int] = {}  # site name -> the seq of its first change in the range
    for change in changes:
        if change.kind == "trust":
            break
        if change.kind == "site":
            first_named.setdefault(change.ref, change.seq)
        end = change.seq
    if end == since:
        raise SnapshotRequired(f"the trust list changed at seq {since + 1}: fetch a snapshot")
    sites = {s.name: s for s in store.sites_named(first_named)} if first_named else {}
    size = 0
    for name, first in first_named.items():
        if name in sites:
            size += len(encode_cbor(sites[name].to_cbor()))
        if size > SITE_UPDATE_BYTES and first > since + 1:
            end = first - 1  # this site and everything after it wait for the next delta
            break

    ids: dict[str, dict[str, bool]] = {"credential": {}, "holder": {}}
    updated: dict[int, str] = {}
    for change in changes:
        if change.seq > end:
            break
        if change.kind in ("revoke", "unrevoke"):
            ids["credential"][change.ref] = change.kind == "revoke"
        elif change.kind in ("revoke_holder", "unrevoke_holder"):
            ids["holder"][change.ref] = change.kind == "revoke_holder"
        elif change.kind == "site" and change.ref in sites:
            updated[sites[change.ref].number] = change.ref

    def pick(kind: str, revoked: bool) -> frozenset[bytes]:
        return frozenset(bytes.fromhex(ref) for ref, state in ids[kind].items() if state is revoked)

    return LedgerDelta(
        base_seq=since, seq=end, issued_at=now,
        revoked=pick("credential", True), unrevoked=pick("credential", False),
        revoked_holders=pick("holder", True), unrevoked_holders=pick("holder", False),
        site_updates=tuple(sites[updated[n]] for n in sorted(updated)),
    )
