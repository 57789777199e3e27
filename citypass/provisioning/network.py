"""The gate unit's network allowance: a systemd drop-in that opens exactly the broker and the issuer.

``citypass-gate.service`` ships with ``IPAddressDeny=any`` and ``IPAddressAllow=localhost``: the daemon may
talk to nothing but itself. An enrolled gate must reach its MQTT broker (``[sync]``) and its issuer (snapshot
catch-up), so enrollment writes, beside the unit::

    /etc/systemd/system/citypass-gate.service.d/50-citypass-network.conf

    # Written by `citypass provision enroll` for gate-wl-e1 …
    [Service]
    IPAddressAllow=192.0.2.10 192.0.2.11

systemd takes addresses and prefixes only, never host names, so the names are resolved when the drop-in is
written; when the broker or issuer moves, ``citypass provision network`` writes it again from ``device.json``
(then ``systemctl daemon-reload``). The unit's other hardening is untouched (its exposure score stays
what docs/operations.md quotes).

    >>> print(dropin_text("gate-wl-e1", {"broker.example:8883": ["192.0.2.10"],
    ...                                  "https://issuer.example": ["192.0.2.11", "2001:db8::1"]}))
    # Written by `citypass provision enroll` for gate-wl-e1: the gate daemon may reach exactly these
    # (broker.example:8883 -> 192.0.2.10; https://issuer.example -> 192.0.2.11 2001:db8::1).
    # Names were resolved when this was written: after a move, run `citypass provision network`.
    [Service]
    IPAddressAllow=192.0.2.10 192.0.2.11 2001:db8::1
    <BLANKLINE>
"""

from __future__ import annotations

import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path

from citypass.gate.paths import GATE_UNIT, NETWORK_DROPIN, UNIT_DIR, UNIT_DIR_ENV
from citypass.provisioning import device as layout
from citypass.provisioning.issuerclient import ProvisionError

Resolver = Callable[[str], list[str]]


def unit_dir() -> Path:
    """Where units live: ``$CITYPASS_UNIT_DIR``, else /etc/systemd/system."""
    return Path(os.environ.get(UNIT_DIR_ENV) or UNIT_DIR)


def dropin_path(units: Path) -> Path:
    return units / f"{GATE_UNIT}.d" / NETWORK_DROPIN


def resolve(host: str) -> list[str]:
    """The addresses ``host`` names (itself, if it is an address), IPv4 first; ProvisionError if none."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise ProvisionError(f"cannot resolve {host!r} for the gate unit's network allowance: {exc}") from None
    found = sorted({str(info[4][0]) for info in infos}, key=lambda a: (":" in a, a))
    return found


def endpoints(record: layout.DeviceRecord) -> dict[str, str]:
    """What the gate daemon dials: label → host (the broker of ``[sync]``, the issuer)."""
    out: dict[str, str] = {}
    if record.broker:
        out[record.broker] = record.broker.rpartition(":")[0].strip("[]")
    host = urllib.parse.urlsplit(record.issuer).hostname
    if host:
        out[record.issuer] = host
    return out


def dropin_text(device_id: str, resolved: Mapping[str, list[str]]) -> str:
    addresses: list[str] = []
    for found in resolved.values():
        addresses += [a for a in found if a not in addresses]
    where = "; ".join(f"{label} -> {' '.join(found)}" for label, found in resolved.items())
    return "\n".join([
        f"# Written by `citypass provision enroll` for {device_id}: the gate daemon may reach exactly these",
        f"# ({where}).",
        "# Names were resolved when this was written: after a move, run `citypass provision network`.",
        "[Service]",
        f"IPAddressAllow={' '.join(addresses)}" if addresses else "# (no broker and no issuer to allow)",
        "",
    ])


def write_dropin(record: layout.DeviceRecord, units: Path, resolver: Resolver = resolve) -> tuple[Path, str]:
    """Write the drop-in for ``record`` under ``units``; (its path, a one-line summary)."""
    resolved = {label: resolver(host) for label, host in endpoints(record).items()}
    path = dropin_path(units)
    text = dropin_text(record.device_id, resolved)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise ProvisionError(f"cannot write {path} ({exc.strerror or exc}): run as root, or write it yourself:\n"
                             + text) from None
    allowed = " ".join(a for found in resolved.values() for a in found)
    return path, f"{path}: IPAddressAllow={allowed or '(none)'}; run `systemctl daemon-reload`"
