"""The lane's result screen: what the visitor at the barrier sees, pushed live from the decision loop.

* :mod:`~citypass.gate.screen.texts` turns a decision or the lane's condition into what the screen shows — a kind
  (allow, flag, deny, idle, out of order, fire), one block of words per configured language from the catalogs;
* :mod:`~citypass.gate.screen.hub` hands those states from the decision loop to every connected screen without
  ever making the loop wait;
* :mod:`~citypass.gate.screen.display` is what the daemon calls (:class:`~citypass.gate.daemon.LaneDisplay`);
* :mod:`~citypass.gate.screen.http` serves ``/screen``, its assets and the ``/screen/events`` stream on the
  health server's address;
* ``static/`` is the page, built from ``web/screen`` (docs/screen.md).
"""

from __future__ import annotations

from pathlib import Path

#: The built screen page (index.html and its assets).
STATIC_DIR = Path(__file__).with_name("static")
