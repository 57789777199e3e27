"""The phone wallet: passes ordered for a phone and claimed once by the wallet page, which the issuer serves.

* :mod:`citypass.issuer.wallet.claims` — ordering a pass for a wallet (a one-time claim link) and claiming it
  (the browser's holder key, the credential signed for it);
* ``static/`` — the wallet page itself, built from ``web/wallet`` (see docs/wallet.md), served at ``/wallet/``
  by the issuer's API (:mod:`citypass.issuer.api.wallet`).
"""

from __future__ import annotations

from pathlib import Path

#: The built wallet page (index.html, assets, service worker, manifest).
STATIC_DIR = Path(__file__).with_name("static")
