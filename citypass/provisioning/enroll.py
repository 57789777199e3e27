"""``citypass provision enroll``: from a blank device to an enrolled gate, each step verified.

The steps, each reported on one line as it completes::

    request    before anything: the token has an enrollment token's shape, the issuer URL is http(s) (plain
               http only with a pinned root key, or --insecure-tofu), the gate id is a safe device id
    home       HOME is free (or already enrolled: say so and stop, unless --force; and --force refuses while
               the old ledger's outbox holds taps not yet uploaded, unless --discard-outbox)
    disk       enough free space for key, config, snapshot and ledger
    issuer     the issuer answers, and its clock agrees with ours (refuse beyond 5 minutes)
    check      the token is asked about without spending it: it is for this gate id, at --site, from the
               pinned root key, and the issuer signs device certificates
    key        a fresh EC P-256 key made here (0600) and a CSR for the device id
    redeem     the one-time token and the CSR go to the issuer; the certificate and the rest come back.
               A failure from here on gives the enrollment back (``/v1/enrollments/release``): the issuer
               revokes what it just issued, shows the device as registered, and the same token works again
    cert       the certificate chains to the CA, names this device, holds our key, is valid now
    snapshot   the root key is the pinned one; the snapshot verifies against it; the site matches
    ledger     the snapshot is installed in the gate's ledger; PRAGMA integrity_check is ok
    config     gate.toml is written and loads with gate.config.load_config
    commit     the temporary directory is renamed to HOME: all of it appears at once

Everything is written into a temporary directory beside HOME and renamed at the end, so any failure
(unreachable issuer, used token, skewed clock, full disk, a power cut) leaves no half-written home.

    >>> request = EnrollRequest(issuer="https://issuer.example", token="cpe_…", home=Path("/var/lib/citypass"),
    ...                         device_id="gate-wl-e1")                            # doctest: +SKIP
    >>> enroll(request, on_step=print)                                              # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from citypass.credential.enrollment import EnrollmentGrant, EnrollmentPreview, looks_like_enrollment_token
from citypass.credential.filemodes import private_dir
from citypass.credential.keys import VerifyKey
from citypass.credential.snapshot import SnapshotError, load_snapshot
from citypass.gate.barrier.boards import DEFAULT_BOARD, board_settings
from citypass.gate.camera import classify_source
from citypass.gate.config import ConfigError, load_config
from citypass.gate.decoders import DEFAULT_DECODER
from citypass.gate.ledger import GateLedger, LedgerError
from citypass.gate.ledger.outbox import read_backlog
from citypass.gate.policy import Direction
from citypass.provisioning import device as layout
from citypass.provisioning.issuerclient import (
    MAX_CLOCK_OFFSET_S,
    IssuerClient,
    ProvisionError,
    check_issuer_url,
    describe_offset,
)
from citypass.sync.ca import CAError, check_common_name, common_name, make_csr, new_key

#: Refuse to start below this much free space: key, certs and config are tiny, but the ledger grows with
#: revocations (10 million is about 400 MB) and taps buffered offline.
MIN_FREE_BYTES = 64 * 1024 * 1024

StepReporter = Callable[[str, str], None]


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


@dataclass(frozen=True)
class EnrollRequest:
    issuer: str
    token: str
    home: Path
    device_id: str
    site: str | None = None  # if given, the issuer's answer must agree (name or number)
    root_kid: str | None = None  # hex id of the root key to pin (from the setup QR), checked if given
    camera: str | None = None
    pins: Literal["native", "mock"] = "native"
    decoder: str = DEFAULT_DECODER
    health_port: int = 9120
    force: bool = False
    discard_outbox: bool = False  # with force: replace a home whose outbox still holds un-uploaded events
    insecure_tofu: bool = False  # allow plain http:// with no pinned root key (trust on first use)
    #: The [barrier] settings (:func:`citypass.gate.barrier.boards.board_settings`); empty: the default board.
    barrier: Mapping[str, Any] = field(default_factory=dict)
    issuer_ca: Path | None = None  # verify the issuer's TLS certificate against this CA only


@dataclass(frozen=True)
class Environment:
    """What enrollment touches outside itself, injectable for tests (nothing here is patched)."""

    transport: httpx.BaseTransport | None = None
    clock: Callable[[], float] = time.time
    free_bytes: Callable[[Path], int] = free_bytes
    write: Callable[[Path, bytes, int], None] = layout.write_file
    max_clock_offset_s: float = MAX_CLOCK_OFFSET_S
    min_free_bytes: int = MIN_FREE_BYTES


@dataclass
class EnrollResult:
    home: Path
    device_id: str
    already: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def _disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


class _Enrollment:
    def __init__(self, req: EnrollRequest, env: Environment, on_step: StepReporter) -> None:
        self.req, self.env, self.on_step = req, env, on_step
        self.home = req.home.absolute()
        self.tmp = self.home.parent / f".{self.home.name}.enrolling"

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        detail: list[str] = []
        try:
            yield detail
        except ProvisionError as exc:
            exc.step = exc.step or name
            raise
        self.on_step(name, "; ".join(detail))

    def write(self, name: str, data: bytes, mode: int = 0o600) -> None:
        try:
            self.env.write(self.tmp / name, data, mode)
        except OSError as exc:
            if _disk_full(exc):
                raise ProvisionError(f"the disk is full (writing {name}): free at least "
                                     f"{self.env.min_free_bytes // 2**20} MB on {self.home.parent} and enroll "
                                     "again; nothing was kept") from None
            raise ProvisionError(f"cannot write {self.tmp / name}: {exc.strerror or exc}") from None

    def _check_request(self) -> str:
        """Everything that can be checked before touching the disk or the network."""
        req = self.req
        if not looks_like_enrollment_token(req.token):
            raise ProvisionError("--token is not an enrollment token (cpe_ followed by 12 hex digits, _ and 43 "
                                 "characters; or the whole setup code CPENROLL:1|…): check it was copied whole")
        url = check_issuer_url(req.issuer)
        try:
            check_common_name(req.device_id)
        except CAError as exc:
            raise ProvisionError(f"--gate: {exc}") from None
        if url.startswith("http://"):
            if not req.root_kid and not req.insecure_tofu:
                raise ProvisionError(
                    f"{url} is plain HTTP and no root key is pinned: anybody on the path could hand this device a "
                    "ledger of their own. Use https://, or pin the root key (--root-kid HEX, or the setup code, "
                    "which carries it), or accept the risk with --insecure-tofu")
            return f"{url}: plain HTTP, " + (f"root key {req.root_kid} pinned" if req.root_kid
                                              else "--insecure-tofu: the root key is trusted on first use")
        return f"{url}: HTTPS" + (f" (private CA {req.issuer_ca})" if req.issuer_ca else "")

    def run(self) -> EnrollResult:
        req = self.req
        with self.step("request") as d:
            d.append(self._check_request())
        with self.step("home") as d:
            if layout.is_enrolled(self.home) and not req.force:
                record = layout.read_record(self.home)
                d.append(f"{self.home} is already enrolled as {record.device_id}; nothing to do "
                         "(--force enrolls again with a new token)")
                return EnrollResult(self.home, record.device_id, already=True)
            if layout.is_enrolled(self.home):
                d.append(self._check_outbox())
            if self.home.exists() and not layout.is_enrolled(self.home) and any(self.home.iterdir()):
                raise ProvisionError(f"{self.home} exists and is not an enrolled device home: "
                                     "give an empty or new directory")
            d.append(f"{self.home} will be written at the end, all at once")
        with self.step("disk") as d:
            free = self.env.free_bytes(self.home.parent)
            if free < self.env.min_free_bytes:
                raise ProvisionError(f"the disk is full: {free // 2**20} MB free on {self.home.parent}, "
                                     f"enrollment needs {self.env.min_free_bytes // 2**20} MB (ledger, "
                                     "taps buffered offline); free some space and enroll again")
            d.append(f"{free // 2**20} MB free")
        client = IssuerClient(req.issuer, transport=self.env.transport, clock=self.env.clock,
                              issuer_ca=req.issuer_ca)
        try:
            return self._with_issuer(client)
        finally:
            client.close()
            if self.tmp.exists():
                shutil.rmtree(self.tmp, ignore_errors=True)

    def _with_issuer(self, client: IssuerClient) -> EnrollResult:
        req = self.req
        with self.step("issuer") as d:
            reading = client.check_clock(self.env.max_clock_offset_s)
            d.append(f"{client.url} answers; clock {describe_offset(reading.offset_s)}")
        with self.step("check") as d:
            preview = client.check(req.token)
            d.append(self._check_preview(preview))
        if self.tmp.exists():  # left by an enrollment that was killed: it was never committed
            shutil.rmtree(self.tmp)
        try:
            self.tmp.mkdir(parents=True)
            private_dir(self.tmp)  # becomes HOME: 0700 whatever the umask
        except OSError as exc:
            if _disk_full(exc):
                raise ProvisionError(f"the disk is full: cannot create {self.tmp}") from None
            raise ProvisionError(f"cannot create {self.tmp}: {exc.strerror or exc}") from None
        with self.step("key") as d:
            key = new_key()
            self.write(layout.KEY, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()), 0o600)
            csr = make_csr(key, req.device_id)
            d.append(f"EC P-256 key in {layout.KEY} (0600, stays here); CSR for CN={req.device_id}")
        with self.step("redeem") as d:
            answer = client.redeem(req.token, csr)
            d.append(f"enrolled as {answer.device_id} at site {answer.site} ({answer.direction})")
        try:
            return self._after_redeem(client, key, answer, reading.offset_s)
        except ProvisionError as exc:
            exc.recovery = self._give_back(client, answer, exc)
            raise

    def _give_back(self, client: IssuerClient, answer: EnrollmentGrant, exc: ProvisionError) -> str:
        """After a redeemed token, a failure here: hand the enrollment back, and say what that means."""
        problem = client.release(self.req.token, answer.api_token)
        if problem is None:
            return ("nothing was kept here, and the issuer took the enrollment back (the device is registered, "
                    "not enrolled; what it had just issued is revoked): fix the cause and run the same command "
                    "again, with the same token")
        return (f"nothing was kept here, but the issuer could not take the enrollment back ({problem}): it shows "
                f"{self.req.device_id} as enrolled and the token is spent. Ask the operator to retire the device "
                f"(citypass provision decommission or DELETE /v1/devices/{self.req.device_id}), register it again "
                "and make a new enrollment (citypass issuer enrollment-qr)")

    def _check_preview(self, preview: EnrollmentPreview) -> str:
        req = self.req
        if preview.device_id != req.device_id:
            raise ProvisionError(f"this token enrolls {preview.device_id!r}, not --gate {req.device_id!r}: use the "
                                 "token made for this gate (or --gate as the operator registered it)")
        if req.site is not None and req.site not in (preview.site_name, str(preview.site)):
            raise ProvisionError(f"this device is registered at site {preview.site_name} (#{preview.site}), not "
                                 f"{req.site}: check the enrollment (or --site)")
        if req.root_kid and preview.root_kid != req.root_kid.lower():
            raise ProvisionError(f"the issuer's root key is {preview.root_kid}, but {req.root_kid} is pinned: "
                                 "this is not the issuer the setup code came from")
        if not preview.signs_certificates:
            raise ProvisionError("the issuer signs no device certificates: it must run with --broker-home "
                                 "(and --broker), see docs/provisioning.md")
        return (f"token for {preview.device_id} at {preview.site_name} (#{preview.site}, {preview.direction}), "
                f"root key {preview.root_kid}, still unspent")

    def _after_redeem(self, client: IssuerClient, key: ec.EllipticCurvePrivateKey, answer: EnrollmentGrant,
                      offset_s: float) -> EnrollResult:
        req = self.req
        cert_pem, ca_pem = answer.certificate, answer.ca_certificate
        if cert_pem is None or ca_pem is None:
            raise ProvisionError("the issuer returned no device certificate: it must run with --broker-home")
        with self.step("cert") as d:
            cert = self._verify_cert(cert_pem, ca_pem, key.public_key().public_numbers())
            d.append(f"CN={req.device_id}, serial {cert.serial_number:x}, valid to "
                     f"{cert.not_valid_after_utc:%Y-%m-%d}, chains to {ca_name(ca_pem)}")
        with self.step("snapshot") as d:
            root, snapshot, site_name = self._verify_snapshot(answer)
            d.append(f"root key {root.kid.hex()} pinned; snapshot seq {answer.ledger_seq} verifies; "
                     f"site {site_name} (#{answer.site})")
        with self.step("ledger") as d:
            self.write(layout.ROOT, root.pem())
            self.write(layout.SNAPSHOT, snapshot)
            self._install_ledger(root, snapshot, answer.site, answer.direction)
            d.append(f"{layout.LEDGER}: snapshot installed, integrity ok")
        with self.step("config") as d:
            self.write(layout.CERT, cert_pem.encode())
            self.write(layout.CA, ca_pem.encode())
            record = layout.DeviceRecord(
                device_id=req.device_id, site=answer.site, site_name=site_name, direction=answer.direction,
                issuer=client.url, broker=answer.broker, api_token=answer.api_token,
                enrolled_at=int(self.env.clock() - offset_s), certificate_serial=f"{cert.serial_number:x}")
            self.write(layout.DEVICE, record.model_dump_json(indent=1).encode(), 0o600)
            self.write(layout.TOKEN, answer.api_token.encode(), 0o600)
            self.write(layout.CONFIG, self._gate_toml(site_name, answer.direction, record.broker,
                                                      client.url).encode())
            try:
                load_config(self.tmp / layout.CONFIG)
            except ConfigError as exc:
                raise ProvisionError(f"the gate config written does not load: {exc}") from None
            d.append(f"{layout.CONFIG} loads; broker {record.broker or 'not named by the issuer'}")
        with self.step("commit") as d:
            self._commit()
            d.append(f"{self.home} ready: citypass selftest --config {self.home / layout.CONFIG}")
        return EnrollResult(self.home, req.device_id, details={"broker": record.broker, "site": site_name})

    def _verify_cert(self, cert_pem: str, ca_pem: str, public: object) -> x509.Certificate:
        try:
            cert = x509.load_pem_x509_certificate(cert_pem.encode())
            ca = x509.load_pem_x509_certificate(ca_pem.encode())
        except ValueError as exc:
            raise ProvisionError(f"the issuer sent a certificate that does not parse: {exc}") from None
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            raise ProvisionError("the device certificate is not signed by the CA certificate sent with it") from None
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            raise ProvisionError("the CA certificate sent is not a CA")
        cn = common_name(cert)
        if cn != self.req.device_id:
            raise ProvisionError(f"the certificate names {cn!r}, not this device {self.req.device_id!r}")
        if cert.public_key().public_numbers() != public:  # type: ignore[union-attr]
            raise ProvisionError("the certificate does not hold this device's key")
        now = dt.datetime.fromtimestamp(self.env.clock(), dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ProvisionError(f"the certificate is not valid now ({cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                                 f"to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC): check the clock")
        return cert

    def _verify_snapshot(self, answer: EnrollmentGrant) -> tuple[VerifyKey, bytes, str]:
        try:
            root = VerifyKey.from_pem(answer.root_public_key.encode())
        except ValueError as exc:
            raise ProvisionError(f"the issuer's root key does not parse: {exc}") from None
        if self.req.root_kid and root.kid.hex() != self.req.root_kid.lower():
            raise ProvisionError(f"the issuer's root key is {root.kid.hex()}, but {self.req.root_kid} is pinned: "
                                 "this is not the issuer the setup code came from")
        data = base64.b64decode(answer.snapshot)
        try:
            snap = load_snapshot(data, root)
        except SnapshotError as exc:
            raise ProvisionError(f"the snapshot does not verify against the root key: {exc}") from None
        site = snap.site(int(answer.site))
        if site is None:
            raise ProvisionError(f"the snapshot has no site #{answer.site}, where this device is registered")
        if answer.site_settings.get("name") not in (None, site.name):
            raise ProvisionError("the site settings sent disagree with the signed snapshot")
        if self.req.site is not None and self.req.site not in (site.name, str(site.number)):
            raise ProvisionError(f"this device is registered at site {site.name} (#{site.number}), not "
                                 f"{self.req.site}: check the enrollment (or --site)")
        return root, data, site.name

    def _install_ledger(self, root: VerifyKey, snapshot: bytes, site: int, direction: str) -> None:
        try:
            with GateLedger.open(self.tmp / layout.LEDGER, root=root) as ledger:
                ledger.load_snapshot(snapshot)
                ledger.set_identity(self.req.device_id, site, Direction(direction))
                integrity = ledger.integrity_check()
                ledger.checkpoint()
        except OSError as exc:
            if _disk_full(exc):
                raise ProvisionError("the disk is full (writing the ledger): free space and enroll again") from None
            raise
        except LedgerError as exc:
            raise ProvisionError(f"the ledger could not be written: {exc}") from None
        if not integrity.ok:
            raise ProvisionError(f"the new ledger fails its integrity check: {'; '.join(integrity.problems)}")

    def _gate_toml(self, site_name: str, direction: str, broker: str | None = None, issuer_url: str = "") -> str:
        req = self.req
        camera = req.camera or "0"
        kind, target = classify_source(camera)
        if kind in ("images", "file") and not Path(target).is_absolute():
            camera = camera[: len(camera) - len(target)] + str(Path(target).absolute())
        q = json.dumps  # a JSON string is a valid TOML basic string
        return "\n".join([
            f"# Written by `citypass provision enroll` for {req.device_id}. Reference: docs/gate-config.md.",
            f"gate_id = {q(req.device_id)}",
            f"site = {q(site_name)}",
            f"direction = {q(direction)}",
            f"root_key = {q(layout.ROOT)}",
            f"snapshot = {q(layout.SNAPSHOT)}",
            f"decoder = {q(req.decoder)}",
            f"pins = {q(req.pins)}",
            "",
            "[ledger]",
            f"path = {q(layout.LEDGER)}",
            "",
            "[camera]",
            f"source = {q(camera)}",
            "",
            "[health]",
            f"port = {req.health_port}",
            "",
            "[barrier]  # board profile and pins: docs/provisioning.md, \"Boards\"",
            *(f"{key} = {_toml_value(value)}" for key, value in (req.barrier or board_settings(DEFAULT_BOARD)).items()),
            "",
            *self._sync_toml(broker, issuer_url),
        ])

    def _sync_toml(self, broker: str | None, issuer_url: str) -> list[str]:
        """The [sync] section: MQTT to the broker the issuer named, with the enrolled certificate."""
        if not broker or ":" not in broker:
            return ["# no [sync]: the issuer named no broker; taps stay in the outbox until one is configured", ""]
        host, _, port = broker.rpartition(":")
        q = json.dumps
        return ["[sync]", f"broker_host = {q(host)}", f"broker_port = {int(port)}", f"ca = {q(layout.CA)}",
                f"cert = {q(layout.CERT)}", f"key = {q(layout.KEY)}", f"issuer_url = {q(issuer_url)}",
                f"token_file = {q(layout.TOKEN)}", ""]

    def _check_outbox(self) -> str:
        """Refuse to replace a home whose ledger still holds events the issuer has not acknowledged: they are
        taps (and their annulments) nobody else has, and the old home is wiped at the end."""
        ledger = self.home / layout.LEDGER
        try:
            pending = read_backlog(ledger) if ledger.exists() else 0
        except sqlite3.Error as exc:
            if self.req.discard_outbox:
                return f"the old ledger is unreadable ({exc}); --discard-outbox: replacing it"
            raise ProvisionError(f"cannot read the outbox of {ledger} ({exc}): copy the file somewhere safe, "
                                 "then enroll again with --force --discard-outbox") from None
        if pending and not self.req.discard_outbox:
            raise ProvisionError(
                f"{ledger} holds {pending} event(s) not yet uploaded to the issuer (taps nobody else has): start "
                f"the gate with its network up (`citypass gate run --config {self.home / layout.CONFIG}`) until "
                "/healthz shows outbox_backlog 0, then enroll again; or give --discard-outbox to throw them away")
        if pending:
            return f"--discard-outbox: {pending} un-uploaded event(s) will be wiped with the old home"
        return "the old home's outbox is empty: nothing is lost by replacing it"

    def _commit(self) -> None:
        if self.req.force and layout.is_enrolled(self.home):
            self._check_outbox()  # again: the gate may have recorded taps while we were enrolling
        for path in [self.tmp, *(p for p in self.tmp.rglob("*") if p.is_dir())]:
            layout.fsync_dir(path)
        old = None
        if self.home.exists() and any(self.home.iterdir()):  # --force over an enrolled home
            old = self.home.parent / f".{self.home.name}.replaced"
            if old.exists():
                shutil.rmtree(old)
            os.rename(self.home, old)
        elif self.home.exists():
            self.home.rmdir()
        os.rename(self.tmp, self.home)
        layout.fsync_dir(self.home.parent)
        if old is not None:
            layout.wipe(old)


def _toml_value(value: object) -> str:
    """A TOML value for a [barrier] setting (a bool, a number or a string; None is "floating" there)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return json.dumps("floating")
    return str(value) if isinstance(value, int | float) else json.dumps(str(value))


def ca_name(ca_pem: str) -> str:
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    names = ca.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else "the CA"


def enroll(req: EnrollRequest, env: Environment | None = None,
           on_step: StepReporter = lambda step, detail: None) -> EnrollResult:
    """Enroll this device (see the module docstring); raises :class:`ProvisionError` with what to do."""
    return _Enrollment(req, env or Environment(), on_step).run()
