"""``citypass provision decommission``: revoke a device at the issuer and wipe it.

With ``--issuer`` and a technician (or admin) token, the device is retired first: the issuer revokes its
API token and, as the device CA, its certificate, and regenerates the CRL, so the broker refuses it from
then on. Then the device home is wiped: the private key and ``device.json`` (which holds the API token)
are overwritten with random bytes before they are unlinked, and the ledger, certificates and config are
deleted. When the issuer cannot be reached the wipe does not happen (a device that forgot its identity
could no longer be revoked by anybody who finds it): fix the network, or pass ``--local-only`` when the
device is retired at the issuer some other way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from citypass.provisioning import device as layout
from citypass.provisioning.issuerclient import IssuerClient, ProvisionError


@dataclass(frozen=True)
class Decommissioned:
    device_id: str
    retired_at_issuer: bool
    wiped: list[str]


def decommission(home: Path, *, issuer: str | None = None, token: str | None = None,
                 transport: httpx.BaseTransport | None = None,
                 on_step: Callable[[str, str], None] = lambda step, detail: None) -> Decommissioned:
    if not layout.is_enrolled(home):
        raise ProvisionError(f"{home} is not an enrolled device home (no {layout.DEVICE} and {layout.CONFIG})")
    record = layout.read_record(home)
    retired = False
    if token is not None:
        url = issuer or record.issuer
        with IssuerClient(url, transport=transport) as client:
            answer = client.retire(record.device_id, token)
        retired = answer.get("status") == "retired"
        on_step("revoke", f"{record.device_id} retired at {url}: API token and certificate revoked")
    wiped = layout.wipe(home)
    on_step("wipe", f"{home}: key and device record overwritten and unlinked; {len(wiped)} entries removed")
    return Decommissioned(record.device_id, retired, wiped)
