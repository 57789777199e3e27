"""A broker home: the CA, the broker's certificate, the device registry and the generated files.

Layout (every path below is inside the home directory)::

    ca/              the device-identity CA (see sync.ca): ca.key 0600, ca.pem, crl.pem, index.json
    server/          server.key (0600) and server.pem: the broker's own TLS identity
    identities.json  which CN is a gate (and at which site) or a service such as the issuer
    acl              generated Mosquitto ACL
    mosquitto.conf   generated Mosquitto config
    data/            Mosquitto's persistence (mosquitto.db)
    log/             mosquitto.log, and mosquitto.stderr for messages before the log opens
    run/broker.pid   the pid of a running broker, so `add-device` and `revoke-device` can reload it

Enrol a gate whose key was made on the device, and the issuer's MQTT identity:

>>> from pathlib import Path
>>> from citypass.sync.ca import make_device_key
>>> home = BrokerHome(Path("bh")).init(hostnames=("broker.example",))
>>> _, csr = make_device_key(Path("gate"), "gate-wl-e1")
>>> cert = home.add_device("gate-wl-e1", site=7, csr_pem=csr.read_bytes())
>>> files = home.add_service("issuer", out_dir=Path("issuer-keys"))
>>> sorted(p.name for p in (files.key, files.cert, files.ca))
['ca.pem', 'issuer.key', 'issuer.pem']

A service that enrols itself at every start keeps its identity (:meth:`BrokerHome.service_files`):

>>> first = home.service_files("issuer-ingest-1", Path("issuer-keys"))
>>> again = home.service_files("issuer-ingest-1", Path("issuer-keys"))
>>> again == first and again.cert.read_bytes() == first.cert.read_bytes()
True
>>> [(i.cn, i.kind, i.site) for i in home.identities()]
[('gate-wl-e1', 'device', 7), ('issuer', 'service', None), ('issuer-ingest-1', 'service', None)]
>>> home.revoke("gate-wl-e1")
1
>>> "user gate-wl-e1\\ntopic deny #" in home.acl_path.read_text()
True
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from citypass.errors import CityPassError
from citypass.sync.brokerconf import BrokerSettings, Identity, render_acl, render_config
from citypass.sync.ca import (
    CAError,
    CertificateAuthority,
    check_common_name,
    make_csr,
    make_device_key,
)
from citypass.sync.endpoint import ClientFiles
from citypass.sync.files import make_dir, write_atomic


def bridge_cn(site: int) -> str:
    """The certificate CN of ``site``'s site-broker bridge: ``site-7-bridge``."""
    return f"site-{site}-bridge"


class BrokerError(CityPassError):
    """The broker home or process cannot do what was asked (message says why and what to do)."""


class BrokerHome:
    """The directory a broker runs from. Every change rewrites the ACL; a running broker is reloaded."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        # Mosquitto splits config lines on whitespace and treats "#" as a comment.
        if any(ch.isspace() or ch == "#" for ch in str(self.path)):
            raise BrokerError(f"the broker home path must not contain spaces or '#': {self.path}")
        self.ca_dir = self.path / "ca"
        self.ca_cert = self.ca_dir / "ca.pem"
        self.server_cert = self.path / "server" / "server.pem"
        self.server_key = self.path / "server" / "server.key"
        self.acl_path = self.path / "acl"
        self.config_path = self.path / "mosquitto.conf"
        self.log_path = self.path / "log" / "mosquitto.log"
        self.pid_path = self.path / "run" / "broker.pid"
        self.registry_path = self.path / "identities.json"

    @property
    def ca(self) -> CertificateAuthority:
        return CertificateAuthority(self.ca_dir)

    def init(self, hostnames: tuple[str, ...] = ()) -> BrokerHome:
        """Create the CA (unless the home has one), a fresh server certificate, the ACL and directories.

        Running it again keeps the CA and every enrolled device, and re-issues the server certificate,
        e.g. to add a hostname.
        """
        for sub in ("data", "log", "run", "server"):
            make_dir(self.path / sub)
        ca = self.ca if CertificateAuthority.exists(self.ca_dir) else CertificateAuthority.create(self.ca_dir)
        ca.issue_server(self.server_key, self.server_cert, hostnames)
        if not self.registry_path.exists():
            self._save_registry({})
        self.write_acl()
        return self

    def _check(self) -> None:
        if not CertificateAuthority.exists(self.ca_dir) or not self.server_cert.exists():
            raise BrokerError(f"{self.path} is not a broker home: run `citypass broker init --home {self.path}`")

    # -- registry -------------------------------------------------------------------------------------
    def _registry(self) -> dict[str, dict[str, object]]:
        data: dict[str, dict[str, object]] = json.loads(self.registry_path.read_text())
        return data

    def _save_registry(self, data: dict[str, dict[str, object]]) -> None:
        write_atomic(self.registry_path, json.dumps(data, indent=1, sort_keys=True).encode())

    def identities(self) -> list[Identity]:
        """Every enrolled CN: gates with their site and services; CNs left with no valid cert are revoked."""
        self._check()
        active = self.ca.active()
        out = []
        for cn, entry in sorted(self._registry().items()):
            if cn not in active:
                out.append(Identity(cn, "revoked"))
            elif entry["kind"] in ("device", "bridge"):
                site = entry["site"]
                out.append(Identity(cn, str(entry["kind"]), site if isinstance(site, int) else None))
            else:
                out.append(Identity(cn, "service"))
        return out

    # -- enrolment ------------------------------------------------------------------------------------
    def _enrol(self, cn: str, kind: str, site: int | None, csr_pem: bytes | None,
               out_dir: Path | None) -> tuple[x509.Certificate, ClientFiles | None]:
        self._check()
        check_common_name(cn)
        if (csr_pem is None) == (out_dir is None):
            raise BrokerError("give exactly one of a CSR or an output directory for a new key")
        files = None
        if out_dir is not None:
            key_path, csr_path = make_device_key(out_dir, cn)
            csr_pem = csr_path.read_bytes()
            files = ClientFiles(out_dir / "ca.pem", out_dir / f"{cn}.pem", key_path)
        assert csr_pem is not None
        cert = self.ca.sign_csr(csr_pem, kind="device" if kind == "device" else "bridge" if kind == "bridge"
                                else "service", expect_cn=cn)
        if files is not None:
            write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM))
            shutil.copyfile(self.ca_cert, files.ca)
        registry = self._registry()
        registry[cn] = {"kind": kind, "site": site}
        self._save_registry(registry)
        self.apply()
        return cert, files

    def add_device(self, device_id: str, site: int, csr_pem: bytes) -> x509.Certificate:
        """Sign a gate's CSR (its CN must be ``device_id``) and let it read ``site``'s downstream topics.

        Enrolling an enrolled gate again renews its certificate and moves it to ``site``.
        """
        if site < 0:
            raise BrokerError("the site must be a non-negative number")
        return self._enrol(device_id, "device", site, csr_pem, None)[0]

    def add_devices(self, devices: Sequence[tuple[str, int, bytes]]) -> list[x509.Certificate]:
        """Enrol many gates at once — ``(device_id, site, csr_pem)`` each, checked as :meth:`add_device` checks
        one — with one CA batch (:meth:`~citypass.sync.ca.CertificateAuthority.sign_csrs`), one registry write
        and one ACL rewrite and reload: a fleet's rollout, or ``citypass bench broker``'s 10,000 gates."""
        self._check()
        for device_id, site, _ in devices:
            check_common_name(device_id)
            if site < 0:
                raise BrokerError("the site must be a non-negative number")
        certs = self.ca.sign_csrs([csr for _, _, csr in devices], kind="device",
                                  expect_cns=[device_id for device_id, _, _ in devices])
        registry = self._registry()
        registry.update({device_id: {"kind": "device", "site": site} for device_id, site, _ in devices})
        self._save_registry(registry)
        self.apply()
        return certs

    def add_device_with_key(self, device_id: str, site: int, out_dir: Path) -> ClientFiles:
        """For tests and development: make the gate's key and CSR in ``out_dir`` too, and sign it there."""
        files = self._enrol(device_id, "device", site, None, out_dir)[1]
        assert files is not None
        return files

    def add_service(self, cn: str, *, csr_pem: bytes | None = None, out_dir: Path | None = None,
                    ) -> ClientFiles | x509.Certificate:
        """Enrol a central service (the issuer) that may read and write the whole topic tree."""
        cert, files = self._enrol(cn, "service", None, csr_pem, out_dir)
        return files if files is not None else cert

    def add_bridge(self, site: int, out_dir: Path) -> ClientFiles:
        """Enrol the bridge of ``site``'s site broker (key made in ``out_dir``, the site broker's home): it may
        carry that site's gates' topics to and from this broker, and nothing else (see docs/broker.md)."""
        if site < 0:
            raise BrokerError("the site must be a non-negative number")
        files = self._enrol(bridge_cn(site), "bridge", site, None, out_dir)[1]
        assert files is not None
        return files

    def service_files(self, cn: str, out_dir: Path, *, renew_within: dt.timedelta = dt.timedelta(days=30),
                      ) -> ClientFiles:
        """The TLS files of service ``cn`` (the issuer's MQTT identities) in ``out_dir``, made once and kept.

        A program that enrols its identities at start-up calls this at every start: the first call makes the
        key and has it signed (as :meth:`add_service`); later calls — after a restart, a crash, a reboot —
        keep the same key and certificate, and renew the certificate (same key) only when it is revoked,
        missing, not this CA's newest for ``cn``, or expires within ``renew_within``. A key left without a
        certificate by a crash half way through the first call is certified then.
        """
        self._check()
        check_common_name(cn)
        files = ClientFiles(out_dir / "ca.pem", out_dir / f"{cn}.pem", out_dir / f"{cn}.key")
        if not files.key.exists():
            result = self.add_service(cn, out_dir=out_dir)
            assert isinstance(result, ClientFiles)
            return result
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise BrokerError(f"{files.key} is not an EC key: move it away and start again")
        if not self._current(cn, files, key, renew_within):
            cert = self._enrol(cn, "service", None, make_csr(key, cn), None)[0]
            write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM))
        if not files.ca.exists() or files.ca.read_bytes() != self.ca_cert.read_bytes():
            write_atomic(files.ca, self.ca_cert.read_bytes())
        return files

    def _current(self, cn: str, files: ClientFiles, key: ec.EllipticCurvePrivateKey,
                 renew_within: dt.timedelta) -> bool:
        """Whether ``files.cert`` is this CA's live certificate for ``cn`` over ``key``, good for a while yet."""
        if not files.cert.exists() or self._registry().get(cn, {}).get("kind") != "service":
            return False
        try:
            cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        except ValueError:
            return False
        active = self.ca.active("service").get(cn)
        return (active is not None and active.serial == f"{cert.serial_number:x}"
                and cert.public_key() == key.public_key()
                and cert.not_valid_after_utc - renew_within > dt.datetime.now(dt.UTC))

    def revoke(self, cn: str) -> int:
        """Revoke ``cn``'s certificates: the CRL refuses new connections, the ACL mutes open ones."""
        self._check()
        try:
            count = self.ca.revoke(cn)
        except CAError:
            if cn not in self._registry():
                raise BrokerError(f"{cn!r} is not enrolled here") from None
            raise
        self.apply()
        return count

    # -- generated files ------------------------------------------------------------------------------
    def write_acl(self) -> None:
        write_atomic(self.acl_path, render_acl(self.identities()).encode())

    def write_config(self, settings: BrokerSettings) -> None:
        if not settings.dev_insecure:
            self._check()
            if self.ca.crl_due():
                self.ca.write_crl()  # an expired CRL would make OpenSSL refuse every client
            self.write_acl()
        for sub in ("data", "log", "run"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        write_atomic(self.config_path, render_config(settings, self.path).encode())

    def settings(self, port: int, bind: str = "127.0.0.1", *, dev_insecure: bool = False) -> BrokerSettings:
        """Settings for this home, running as the account that owns the files (see ``user`` in the config)."""
        return BrokerSettings(port=port, bind="127.0.0.1" if dev_insecure else bind,
                              user=pwd.getpwuid(os.geteuid()).pw_name, dev_insecure=dev_insecure)

    def apply(self) -> bool:
        """Rewrite the ACL and, if a broker runs from this home, SIGHUP it. True if one was reloaded."""
        self.write_acl()
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGHUP)  # mosquitto 2.0 reloads the ACL and, with crlfile set, the CRL
        return True

    def running_pid(self) -> int | None:
        """The pid of mosquitto running this home's config, if any (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_path.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if str(self.config_path).encode() in cmdline else None
