"""What an enrolled device keeps in its home directory, and how it is written and wiped.

``citypass provision enroll --home HOME`` produces, all at once (see :mod:`citypass.provisioning.enroll`)::

    HOME/gate.toml          the gate config (`citypass gate run --config HOME/gate.toml`)
    HOME/device.json        device id, site, issuer and broker addresses, the device API token     0600
    HOME/root.pub           the pinned root public key
    HOME/snapshot.cpls      the signed ledger snapshot the issuer handed over at enrollment
    HOME/ledger.sqlite3     the gate's ledger, with that snapshot installed
    HOME/tls/device.key     the device's private key (made here, never sent anywhere)             0600
    HOME/tls/device.pem     its certificate (CN = device id), signed by the device CA
    HOME/tls/ca.pem         the device CA's certificate (the broker's certificate chains to it too)

HOME is 0700 and every file in it 0600, whatever the umask (:mod:`citypass.credential.filemodes`): the ledger
holds every tap, and the config and device record say where the keys and the token are.

``device.json`` is read by ``citypass selftest`` (broker and clock checks) and by decommissioning; the
gate daemon itself needs only ``gate.toml`` and what it names.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

CONFIG = "gate.toml"
DEVICE = "device.json"
ROOT = "root.pub"
SNAPSHOT = "snapshot.cpls"
LEDGER = "ledger.sqlite3"
TLS = "tls"
KEY = "tls/device.key"
CERT = "tls/device.pem"
CA = "tls/ca.pem"
TOKEN = "tls/api.token"  # the device API token again, as the gate config's sync.token_file (0600)


class DeviceRecord(BaseModel):
    """``device.json``: who this device is and whom it talks to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str = Field(description="The gate id, also the certificate's CN and the MQTT username.")
    site: int = Field(description="Site number.")
    site_name: str = Field(description="Site name, as in the ledger.")
    direction: str = Field(description="entry or exit.")
    issuer: str = Field(description="The issuer's base URL.")
    broker: str | None = Field(None, description="The MQTT broker as host:port; None if the issuer named none.")
    api_token: str = Field(description="The device's API token (role device), for uploads and health reports.")
    enrolled_at: int = Field(description="Unix seconds, by the issuer's clock.")
    certificate_serial: str = Field(description="Serial of the device certificate (hex).")


def write_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` with ``mode`` from the start (a key is never readable by others, not even briefly)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, mode)  # the umask may have narrowed it


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_enrolled(home: Path) -> bool:
    return (home / DEVICE).is_file() and (home / CONFIG).is_file()


def read_record(home: Path) -> DeviceRecord:
    return DeviceRecord.model_validate_json((home / DEVICE).read_bytes())


def shred(path: Path) -> None:
    """Overwrite a secret file with random bytes, fsync, then unlink it.

    On flash with wear levelling the old blocks may survive; this still defeats reading the file back
    through the file system, which is what a thief with the SD card tries first.
    """
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.write(os.urandom(max(size, 1)))
        f.flush()
        os.fsync(f.fileno())
    path.unlink()


def wipe(home: Path) -> list[str]:
    """Shred keys and the device record, delete ledger, config and everything else in ``home``.

    Returns the names handled, in order. Secrets first, so an interrupted wipe has removed them already.
    """
    done: list[str] = []
    for name in (KEY, DEVICE):
        if (home / name).is_file():
            shred(home / name)
            done.append(name)
    for path in sorted(home.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
        done.append(str(path.relative_to(home)))
    home.rmdir()
    return done
