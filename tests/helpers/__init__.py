"""Helpers shared by the tests: fixtures, factories and rigs that more than one test module uses.

* :mod:`tests.helpers.codes` — a root, keys, a trust list and sites of every kind, and codes of every product;
* :mod:`tests.helpers.decisions` — a snapshot in memory and one decision at a gate of it;
* :mod:`tests.helpers.ledger` — an issuer and gate ledgers on real SQLite files;
* :mod:`tests.helpers.reconcile` — tap records for the issuer's reconciliation;
* :mod:`tests.helpers.sync` — a real Mosquitto with enrolled gates and the issuer's MQTT side;
* :mod:`tests.helpers.gate_run` — ``citypass gate run`` in a subprocess, with a scene of phone-screen frames.

A test module imports what it uses from here, never from another test module.
"""
