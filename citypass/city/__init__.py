"""The demo's city act: six real gate daemons at four kinds of site, running at once against the real
issuer and broker, with simulated visitors, a link that fails midway, a live view and a checked summary.

* :mod:`citypass.city.script` — pure: the gates, the visitors' mix and the phases, each visit with the
  decision it must get;
* :mod:`citypass.city.cast` — the visitors' cards, issued through the issuer's HTTP API;
* :mod:`citypass.city.enrol` — each gate enrolled through the real enrollment flow;
* :mod:`citypass.city.lane` — one gate running (daemon, sync, visitor simulator threads);
* :mod:`citypass.city.view` — the live view of decisions (zh / en reasons);
* :mod:`citypass.city.checks` — pure: what the end of the day must show;
* :mod:`citypass.city.summary` — the issuer's reports as tables;
* :mod:`citypass.city.run` — the director that plays it all.
"""
