"""The central issuer: signs credentials, takes reservations and revocations, publishes the signed ledger,
ingests taps and reports on them.

Where things are: :mod:`issuer.home` (key files), :mod:`issuer.service` (signing, revocation, rotation,
snapshots), :mod:`issuer.bookings` (venues, slots, reservations), :mod:`issuer.deltas` (ledger deltas from
the change log), :mod:`issuer.ingest` (validating uploaded taps), :mod:`issuer.reconcile` (incidents,
occupancy, journeys), :mod:`issuer.repository` (the storage interface) with its SQLite implementation
:mod:`issuer.store`, :mod:`issuer.api` (the FastAPI app) and :mod:`issuer.cli` (``citypass issuer …``).
See docs/issuer.md.
"""
