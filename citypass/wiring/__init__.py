"""The wiring layer: the one place per program that composes subsystems into a running program.

The subsystems below never import one another sideways (see README "Layout" and the import contract in
``pyproject.toml``): the gate knows nothing of MQTT, the issuer nothing of the broker's certificate
authority. A program needs both, so it is put together here, at the top:

* :mod:`citypass.wiring.gate` — ``citypass gate run``: the gate daemon built from its config (camera,
  decoder, ledger, pins, health port) with its MQTT sync client beside it;
* :mod:`citypass.wiring.issuer` — ``citypass issuer serve``: the issuer's HTTP API with the broker home's
  device CA behind it, and its MQTT ingest workers and ledger publisher.
"""
