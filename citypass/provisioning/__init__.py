"""Provisioning: what a technician runs to turn a blank device into an enrolled, self-tested gate.

One module per job: :mod:`citypass.provisioning.enroll` (key, CSR, redeem, verify, write atomically),
:mod:`citypass.provisioning.selftest` (camera, decoder, GPIO, broker, clock, disk, ledger),
:mod:`citypass.provisioning.decommission` (retire at the issuer, shred and wipe), :mod:`citypass.provisioning.setupcode`
(the setup QR), :mod:`citypass.provisioning.issuerclient` (the HTTP calls and their errors),
:mod:`citypass.provisioning.device` (the device home's layout) and :mod:`citypass.provisioning.cli` (the commands).
See docs/provisioning.md.
"""
