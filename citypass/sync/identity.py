"""A device's identity on the broker: its certificate's Common Name, its key and its CSR.

What the device makes — :func:`new_key`, :func:`make_csr`, :func:`make_device_key` (the key never leaves it) — and
what the CA checks before signing (:func:`read_csr`). The CA itself, which signs, indexes and revokes, is
:mod:`citypass.sync.ca`; it re-exports these names.

>>> from cryptography.hazmat.primitives.asymmetric import ec
>>> cn, public_key = read_csr(make_csr(new_key(), "gate-wl-e1"), expect_cn="gate-wl-e1")
>>> cn, isinstance(public_key, ec.EllipticCurvePublicKey)
('gate-wl-e1', True)
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from citypass.credential.devices import check_device_id
from citypass.errors import CityPassError, InvalidInput
from citypass.sync.files import shared_with_group, write_atomic


class CAError(CityPassError):
    """A CA operation that cannot be done: a bad CN or CSR, a missing or existing CA, an unknown device."""


def check_common_name(cn: str) -> str:
    """Return ``cn`` if it is a safe device id (:mod:`citypass.credential.devices`: it becomes an MQTT username,
    client id, ACL entry and topic level), else raise :class:`CAError`.

    >>> check_common_name("gate-wl-e1")
    'gate-wl-e1'
    >>> check_common_name("gate/+")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    citypass.sync.identity.CAError: unsafe common name 'gate/+': use 1-64 of a-z 0-9 . _ - (starting and ending ...)
    """
    try:
        return check_device_id(cn, "common name")
    except InvalidInput as exc:
        raise CAError(str(exc)) from None


def common_name(cert: x509.Certificate | x509.CertificateSigningRequest) -> str:
    """The subject's CN (the device id), or raise :class:`CAError` if there is not exactly one."""
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        raise CAError("the subject must have exactly one common name")
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 key: small certificates, fast handshakes on a gate's CPU, supported by every broker."""
    return ec.generate_private_key(ec.SECP256R1())


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key as unencrypted PKCS#8 PEM, mode 0600 (the broker and paho read it unattended), or
    0640 in a group-shared directory (:func:`shared_with_group`)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_atomic(path, pem, 0o640 if shared_with_group(path.parent) else 0o600)


def make_csr(key: ec.EllipticCurvePrivateKey, cn: str) -> bytes:
    """A PEM certificate signing request for ``cn``, signed by ``key`` (proof the requester holds it)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, check_common_name(cn))])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM)


def make_device_key(out_dir: Path, cn: str) -> tuple[Path, Path]:
    """On the device: create ``OUT/CN.key`` (0600) and ``OUT/CN.csr``; send only the CSR to the CA."""
    check_common_name(cn)
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path, csr_path = out_dir / f"{cn}.key", out_dir / f"{cn}.csr"
    if key_path.exists():
        raise CAError(f"{key_path} exists: refusing to replace a device key")
    key = new_key()
    write_key(key_path, key)
    write_atomic(csr_path, make_csr(key, cn))
    return key_path, csr_path


def read_csr(csr_pem: bytes, expect_cn: str | None) -> tuple[str, ec.EllipticCurvePublicKey]:
    """What the CA takes from a CSR — its CN and public key — once the CSR's signature verifies (the requester
    holds the key), the key is EC P-256 or P-384, the CN is safe and, if given, ``expect_cn``; else :class:`CAError`."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CAError(f"not a PEM certificate signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise CAError("the CSR's signature does not verify")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name not in {
            "secp256r1", "secp384r1"}:
        raise CAError("device keys must be EC P-256 or P-384")
    cn = check_common_name(common_name(csr))
    if expect_cn is not None and cn != expect_cn:
        raise CAError(f"the CSR is for {cn!r}, not {expect_cn!r}")
    return cn, public_key
