"""The central issuer: signs credentials, takes reservations and revocations, publishes the signed ledger,
ingests taps and reports on them.

Where things are: :mod:`citypass.issuer.home` (key files), :mod:`citypass.issuer.service` (signing, revocation,
rotation, snapshots), :mod:`citypass.issuer.bookings` (venues, slots, reservations), :mod:`citypass.issuer.deltas`
(ledger deltas from the change log), :mod:`citypass.issuer.ingest` (validating uploaded taps),
:mod:`citypass.issuer.reconcile` (incidents, occupancy, journeys), :mod:`citypass.issuer.repository` (the storage
interface) with its SQLite implementation :mod:`citypass.issuer.store`, :mod:`citypass.issuer.api` (the FastAPI app)
and :mod:`citypass.issuer.cli` (``citypass issuer …``). See docs/issuer.md.
"""
