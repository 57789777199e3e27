"""Provisioning: what a technician runs to turn a blank device into an enrolled, self-tested gate.

One module per job: :mod:`provisioning.enroll` (key, CSR, redeem, verify, write atomically),
:mod:`provisioning.selftest` (camera, decoder, GPIO, broker, clock, disk, ledger),
:mod:`provisioning.decommission` (retire at the issuer, shred and wipe), :mod:`provisioning.setupcode`
(the setup QR), :mod:`provisioning.issuerclient` (the HTTP calls and their errors),
:mod:`provisioning.device` (the device home's layout) and :mod:`provisioning.cli` (the commands).
See docs/provisioning.md.
"""
