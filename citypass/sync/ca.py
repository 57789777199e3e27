"""A small X.509 certificate authority for device identity on the MQTT broker.

Every gate proves who it is to the broker with a client certificate whose Common Name is its device id;
Mosquitto turns that CN into the MQTT username (``use_identity_as_username``) and the ACL file grants
topics by username. So this CA *is* the broker's user database: issuing a certificate enrols a device,
revoking it (and publishing the CRL) locks the device out.

The CA lives in one directory::

    ca/ca.key      EC P-256 private key, mode 0600 (the only secret here)
    ca/ca.pem      self-signed CA certificate: give it to every device and to the broker (cafile)
    ca/crl.pem     certificate revocation list: the broker reads it (crlfile)
    ca/index.json  every certificate issued: serial, CN, kind, validity, revocation
    ca/.lock       flock()ed while the index or CRL changes, so concurrent enrolments cannot lose a row

A device makes its own key and a CSR; the key never leaves the device. The CA signs the CSR:

>>> from pathlib import Path
>>> ca = CertificateAuthority.create(Path("ca"))
>>> key_path, csr_path = make_device_key(Path("device"), "gate-wl-e1")
>>> oct(key_path.stat().st_mode & 0o777)
'0o600'
>>> cert = ca.sign_csr(csr_path.read_bytes(), kind="device")
>>> common_name(cert)
'gate-wl-e1'
>>> ca.revoke("gate-wl-e1")
1
>>> ca.is_revoked(cert.serial_number)
True

CNs are checked by :func:`~citypass.sync.identity.check_common_name`: they become MQTT usernames, client ids,
ACL entries and topic levels, so only ``a-z 0-9 . _ -`` are allowed (no ``/ + # %`` or spaces, no leading ``$``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from citypass.sync.files import make_dir, shared_with_group, write_atomic
from citypass.sync.identity import CAError as CAError  # the device side's names are re-exported here
from citypass.sync.identity import check_common_name as check_common_name
from citypass.sync.identity import common_name as common_name
from citypass.sync.identity import make_csr as make_csr
from citypass.sync.identity import make_device_key as make_device_key
from citypass.sync.identity import new_key as new_key
from citypass.sync.identity import read_csr, write_key

CA_NAME = "City Pass device CA"
Kind = Literal["device", "service", "bridge", "server"]
CA_DAYS = 3650
LEAF_DAYS = 825  # what browsers accept for a server; devices are re-enrolled well within it
CRL_DAYS = 365  # OpenSSL refuses *every* client once the CRL's next_update passes: keep it long, refresh it


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _live_kinds(rows: list[Issued]) -> dict[str, set[str]]:
    """The kinds of the unrevoked certificates of each CN."""
    live: dict[str, set[str]] = {}
    for row in rows:
        if row.revoked_at is None:
            live.setdefault(row.cn, set()).add(row.kind)
    return live


def _client_san(kind: str, cn: str) -> x509.GeneralName:
    # The CN is what Mosquitto (and EMQX) use; the URI SAN is there because RFC 5280 profiles, such as
    # cryptography's own client verifier, expect a subjectAltName in every end-entity certificate.
    return x509.UniformResourceIdentifier(f"urn:citypass:{kind}:{cn}")


@dataclass
class Issued:
    """One row of the CA's index: a certificate issued, and its revocation if any."""

    serial: str  # hex, as openssl prints it
    cn: str
    kind: str
    not_before: str
    not_after: str
    revoked_at: str | None = None


class CertificateAuthority:
    """The device-identity CA stored in ``directory``; open an existing one or :meth:`create` a new one."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        if not self.cert_path.exists() or not self.key_path.exists():
            raise CAError(f"no CA in {directory} (create one with `citypass broker init`)")
        self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CAError(f"{self.key_path} is not an EC key")
        self.key = key

    @property
    def key_path(self) -> Path:
        return self.dir / "ca.key"

    @property
    def cert_path(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def crl_path(self) -> Path:
        return self.dir / "crl.pem"

    @property
    def index_path(self) -> Path:
        return self.dir / "index.json"

    @staticmethod
    def exists(directory: Path) -> bool:
        return (directory / "ca.pem").exists()

    @classmethod
    def create(cls, directory: Path, *, name: str = CA_NAME, now: dt.datetime | None = None) -> CertificateAuthority:
        """Create the CA key, its self-signed certificate, an empty index and an empty CRL."""
        if cls.exists(directory):
            raise CAError(f"{directory} already holds a CA: refusing to overwrite")
        make_dir(directory)
        now = now or _now()
        key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "City Pass"),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
                # path_length=0: this CA signs leaves only, never another CA.
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(ski, critical=False)
                .sign(key, hashes.SHA256()))
        write_key(directory / "ca.key", key)
        write_atomic(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
        write_atomic(directory / "index.json", json.dumps({"crl_number": 0, "issued": []}).encode())
        ca = cls(directory)
        ca.write_crl(now=now)
        return ca

    # -- index ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise read-modify-write of the index and CRL (the CLI and the issuer may enrol at once)."""
        with open(self.dir / ".lock", "a") as lock:
            if shared_with_group(self.dir) and os.fstat(lock.fileno()).st_uid == os.geteuid():
                os.fchmod(lock.fileno(), 0o660)  # the broker's and the issuer's accounts both take this lock
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _load(self) -> tuple[int, list[Issued]]:
        data = json.loads(self.index_path.read_text())
        return int(data["crl_number"]), [Issued(**row) for row in data["issued"]]

    def _save(self, crl_number: int, rows: list[Issued]) -> None:
        data = {"crl_number": crl_number, "issued": [asdict(r) for r in rows]}
        write_atomic(self.index_path, json.dumps(data, indent=1).encode())

    def issued(self) -> list[Issued]:
        """Every certificate this CA has signed, oldest first."""
        return self._load()[1]

    def active(self, kind: str | None = None) -> dict[str, Issued]:
        """The newest unrevoked certificate per CN (optionally of one kind)."""
        out: dict[str, Issued] = {}
        for row in self.issued():
            if row.revoked_at is None and (kind is None or row.kind == kind):
                out[row.cn] = row
        return out

    def is_revoked(self, serial: int) -> bool:
        return any(r.serial == f"{serial:x}" and r.revoked_at for r in self.issued())

    # -- issuing ----------------------------------------------------------------------------------------
    def _sign(self, cn: str, kind: Kind, public_key: ec.EllipticCurvePublicKey, sans: list[x509.GeneralName],
              days: int, now: dt.datetime | None) -> x509.Certificate:
        now = now or _now()
        with self._locked():
            return self._sign_locked(cn, kind, public_key, sans, days, now)

    def _sign_locked(self, cn: str, kind: Kind, public_key: ec.EllipticCurvePublicKey,
                     sans: list[x509.GeneralName], days: int, now: dt.datetime) -> x509.Certificate:
        crl_number, rows = self._load()
        cert = self._certificate(rows, _live_kinds(rows), cn, kind, public_key, sans, days, now)
        self._save(crl_number, rows)
        return cert

    def _certificate(self, rows: list[Issued], live: dict[str, set[str]], cn: str, kind: Kind,
                     public_key: ec.EllipticCurvePublicKey, sans: list[x509.GeneralName], days: int,
                     now: dt.datetime) -> x509.Certificate:
        """Sign one certificate and append its row to ``rows`` and ``live`` (:func:`_live_kinds` of the rows; the
        caller holds the lock and saves)."""
        clash = live.get(cn, set()) - {kind}
        if clash:  # a device named "issuer" would inherit the service's ACL: names are one namespace
            raise CAError(f"{cn!r} is already a {sorted(clash)[0]} identity")
        usage = ExtendedKeyUsageOID.SERVER_AUTH if kind == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "City Pass"),
                                            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
                                            x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                   .issuer_name(self.cert.subject).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a device clock a little behind
                   .not_valid_after(min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=False, crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        rows.append(Issued(f"{cert.serial_number:x}", cn, kind, cert.not_valid_before_utc.isoformat(),
                           cert.not_valid_after_utc.isoformat()))
        live.setdefault(cn, set()).add(kind)
        return cert

    def sign_csr(self, csr_pem: bytes, *, kind: Literal["device", "service", "bridge"], expect_cn: str | None = None,
                 days: int = LEAF_DAYS, now: dt.datetime | None = None) -> x509.Certificate:
        """Sign a device's (or the issuer service's, or a site broker's bridge's) CSR. Only the CN and public key
        are taken from it.

        Raises :class:`CAError` for a CSR whose signature does not verify (the requester does not hold the
        key), an unsafe CN, a CN other than ``expect_cn``, or a key that is not EC P-256/P-384.
        """
        cn, public_key = read_csr(csr_pem, expect_cn)
        return self._sign(cn, kind, public_key, [_client_san(kind, cn)], days, now)

    def sign_csrs(self, csr_pems: Sequence[bytes], *, kind: Literal["device", "service", "bridge"],
                  expect_cns: Sequence[str] | None = None, days: int = LEAF_DAYS, now: dt.datetime | None = None,
                  ) -> list[x509.Certificate]:
        """Sign many CSRs at once, checked one by one as :meth:`sign_csr` checks them: a fleet's enrolment.

        One lock, one read and one write of the index for the whole batch (:meth:`sign_csr` rewrites and
        fsyncs the index for every certificate, ~15 ms each: 10,000 gates one by one would take minutes).
        Every CSR is checked before anything is signed, so a bad one leaves the index untouched.
        """
        if expect_cns is not None and len(expect_cns) != len(csr_pems):
            raise CAError(f"{len(csr_pems)} CSRs but {len(expect_cns)} expected names")
        checked = [read_csr(pem, None if expect_cns is None else expect_cns[i]) for i, pem in enumerate(csr_pems)]
        now = now or _now()
        with self._locked():
            crl_number, rows = self._load()
            live = _live_kinds(rows)
            certs = [self._certificate(rows, live, cn, kind, public_key, [_client_san(kind, cn)], days, now)
                     for cn, public_key in checked]
            self._save(crl_number, rows)
        return certs

    def issue_server(self, key_path: Path, cert_path: Path, hostnames: tuple[str, ...] = (),
                     *, now: dt.datetime | None = None) -> x509.Certificate:
        """Make the broker's key and certificate, valid for localhost, 127.0.0.1, ::1 and ``hostnames``."""
        names = ["localhost", *[h for h in hostnames if h != "localhost"]]
        sans: list[x509.GeneralName] = []
        for name in dict.fromkeys([*names, "127.0.0.1", "::1"]):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        key = new_key()
        cert = self._sign("citypass-broker", "server", key.public_key(), sans, LEAF_DAYS, now)
        write_key(key_path, key)
        write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert

    # -- revocation -------------------------------------------------------------------------------------
    def revoke(self, cn: str, *, now: dt.datetime | None = None) -> int:
        """Revoke every unrevoked certificate for ``cn`` and rewrite the CRL; returns how many were revoked."""
        now = now or _now()
        with self._locked():
            crl_number, rows = self._load()
            hits = [r for r in rows if r.cn == cn and r.revoked_at is None]
            if not hits:
                raise CAError(f"no unrevoked certificate for {cn!r}")
            for row in hits:
                row.revoked_at = now.isoformat()
            self._save(crl_number, rows)
            self._write_crl(now)
        return len(hits)

    def write_crl(self, *, now: dt.datetime | None = None) -> x509.CertificateRevocationList:
        """Sign a fresh CRL of every revoked serial into ``crl.pem`` with the next CRL number.

        An empty CRL is still written: with ``crlfile`` set, OpenSSL requires a CRL from the issuing CA.
        """
        with self._locked():
            return self._write_crl(now or _now())

    def _write_crl(self, now: dt.datetime) -> x509.CertificateRevocationList:
        crl_number, rows = self._load()
        crl_number += 1
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=CRL_DAYS))
                   .add_extension(x509.CRLNumber(crl_number), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        for row in rows:
            if row.revoked_at:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder().serial_number(int(row.serial, 16))
                    .revocation_date(dt.datetime.fromisoformat(row.revoked_at)).build())
        crl = builder.sign(self.key, hashes.SHA256())
        self._save(crl_number, rows)
        write_atomic(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return crl

    def crl_due(self, *, within: dt.timedelta = dt.timedelta(days=CRL_DAYS // 2), now: dt.datetime | None = None,
                ) -> bool:
        """Whether ``crl.pem`` is missing or expires within ``within`` (then call :meth:`write_crl`)."""
        if not self.crl_path.exists():
            return True
        crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
        next_update = crl.next_update_utc
        return next_update is None or next_update - within <= (now or _now())
