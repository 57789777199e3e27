"""Where a gate's files live on a device: one place, read by enrollment, the units, the hooks and the self-test.

``citypass provision enroll`` writes the device home (:mod:`citypass.provisioning.device`) into
:data:`STATE_DIR`, the units' ``StateDirectory=citypass``; the gate config inside it is :data:`GATE_CONFIG`,
the path every unit's ``ExecStart=`` and ``ConditionPathExists=`` names, and the default ``--config`` of
``citypass gate run``, ``citypass hooks …`` and ``citypass selftest``. ``tests/test_systemd_units.py`` checks
that the units and these constants agree.

Enrollment also opens the gate unit's network for exactly its broker and issuer with a drop-in in
:data:`UNIT_DIR` (``$CITYPASS_UNIT_DIR`` overrides it, so tests write into a scratch folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

STATE_DIR: Final = Path("/var/lib/citypass")
GATE_CONFIG: Final = STATE_DIR / "gate.toml"
GATE_UNIT: Final = "citypass-gate.service"
UNIT_DIR: Final = Path("/etc/systemd/system")
UNIT_DIR_ENV: Final = "CITYPASS_UNIT_DIR"
NETWORK_DROPIN: Final = "50-citypass-network.conf"
