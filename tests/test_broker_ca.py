"""The device-identity CA: what it signs, what it refuses, and the CRL the broker reads."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from citypass.sync.ca import (
    CAError,
    CertificateAuthority,
    check_common_name,
    common_name,
    make_csr,
    make_device_key,
    new_key,
)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca")


def _csr(cn: str) -> bytes:
    return make_csr(new_key(), cn)


def test_the_ca_directory_holds_a_0600_key_a_ca_certificate_an_index_and_an_empty_crl(
        ca: CertificateAuthority) -> None:
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert common_name(ca.cert) == "City Pass device CA"
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert len(crl) == 0 and crl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]
    assert json.loads(ca.index_path.read_text())["issued"] == []
    with pytest.raises(CAError, match="refusing to overwrite"):
        CertificateAuthority.create(ca.dir)


def test_a_device_certificate_verifies_as_a_tls_client_of_this_ca(ca: CertificateAuthority, tmp_path: Path) -> None:
    key_path, csr_path = make_device_key(tmp_path / "gate", "gate-wl-e1")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = ca.sign_csr(csr_path.read_bytes(), kind="device", expect_cn="gate-wl-e1")
    assert common_name(cert) == "gate-wl-e1"
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH])
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()
    verifier = PolicyBuilder().store(Store([ca.cert])).build_client_verifier()
    verified = verifier.verify(cert, [])
    assert verified.chain[-1] == ca.cert
    assert [row.cn for row in ca.issued()] == ["gate-wl-e1"]


def test_the_server_certificate_names_localhost_loopback_and_given_hosts(
        ca: CertificateAuthority, tmp_path: Path) -> None:
    cert = ca.issue_server(tmp_path / "s.key", tmp_path / "s.pem", ("broker.city.example", "10.0.0.5"))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "broker.city.example"}
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"), ipaddress.ip_address("10.0.0.5")}
    verifier = PolicyBuilder().store(Store([ca.cert])).build_server_verifier(x509.DNSName("broker.city.example"))
    verifier.verify(cert, [])
    assert stat.S_IMODE((tmp_path / "s.key").stat().st_mode) == 0o600


@pytest.mark.parametrize("cn", ["", "Gate-A", "gate/a", "gate+", "#", "gate a", "$sys", "%u", "-gate", "gate-",
                                "g" * 65, "gäte", "gate\n"])
def test_unsafe_common_names_are_refused(ca: CertificateAuthority, cn: str) -> None:
    with pytest.raises(CAError, match="unsafe common name"):
        check_common_name(cn)
    # A CSR carrying such a name (built by hand, not by our helper) is refused when signed.
    try:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]) if cn else x509.Name([])
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(new_key(), hashes.SHA256())
    except ValueError:
        return  # the library itself will not encode it
    with pytest.raises(CAError):
        ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM), kind="device")


def test_bad_csrs_are_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CAError, match="not a PEM"):
        ca.sign_csr(b"hello", kind="device")
    with pytest.raises(CAError, match="is for 'gate-a', not 'gate-b'"):
        ca.sign_csr(_csr("gate-a"), kind="device", expect_cn="gate-b")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gate-a")]))
               .sign(rsa_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(CAError, match="EC P-256"):
        ca.sign_csr(rsa_csr, kind="device")
    # A CSR whose public key was swapped after signing: the requester does not hold the key it names.
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    genuine = x509.load_pem_x509_csr(_csr("gate-a"))
    forged = genuine.public_bytes(serialization.Encoding.DER).replace(
        genuine.public_key().public_bytes(*spki), new_key().public_key().public_bytes(*spki))
    forged_pem = x509.load_der_x509_csr(forged).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CAError, match="signature does not verify"):
        ca.sign_csr(forged_pem, kind="device")
    assert ca.issued() == []


def test_device_and_service_names_are_one_namespace(ca: CertificateAuthority) -> None:
    ca.sign_csr(_csr("issuer"), kind="service")
    with pytest.raises(CAError, match="already a service identity"):
        ca.sign_csr(_csr("issuer"), kind="device")
    ca.sign_csr(_csr("issuer"), kind="service")  # renewal of the same kind is fine
    assert len(ca.active()) == 1 and len(ca.issued()) == 2


def test_revocation_lists_every_certificate_of_the_name_in_a_signed_crl(ca: CertificateAuthority) -> None:
    first = ca.sign_csr(_csr("gate-a"), kind="device")
    second = ca.sign_csr(_csr("gate-a"), kind="device")  # a renewal: both must go
    keep = ca.sign_csr(_csr("gate-b"), kind="device")
    before = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert ca.revoke("gate-a") == 2
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]
    assert {r.serial_number for r in crl} == {first.serial_number, second.serial_number}
    assert crl.get_revoked_certificate_by_serial_number(keep.serial_number) is None
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert ca.is_revoked(first.serial_number) and not ca.is_revoked(keep.serial_number)
    assert set(ca.active()) == {"gate-b"}
    with pytest.raises(CAError, match="no unrevoked certificate"):
        ca.revoke("gate-a")
    ca.sign_csr(_csr("gate-a"), kind="device")  # re-enrolment after revocation gives a new, valid cert
    assert set(ca.active()) == {"gate-a", "gate-b"}


def test_the_crl_is_refreshed_long_before_openssl_would_reject_it(ca: CertificateAuthority) -> None:
    now = dt.datetime.now(dt.UTC)
    assert not ca.crl_due(now=now)
    assert ca.crl_due(now=now + dt.timedelta(days=200))  # past half of its year: time to re-sign
    ca.crl_path.unlink()
    assert ca.crl_due()


def test_an_existing_device_key_is_never_replaced(tmp_path: Path) -> None:
    make_device_key(tmp_path, "gate-a")
    with pytest.raises(CAError, match="refusing to replace"):
        make_device_key(tmp_path, "gate-a")


def test_opening_a_directory_without_a_ca_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(CAError, match="citypass broker init"):
        CertificateAuthority(tmp_path)


def test_the_key_is_ec_p256(ca: CertificateAuthority) -> None:
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and ca.key.curve.name == "secp256r1"


def test_concurrent_enrolments_all_land_in_the_index(ca: CertificateAuthority) -> None:
    csrs = [_csr(f"gate-{n}") for n in range(12)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda pem: ca.sign_csr(pem, kind="device"), csrs))
    assert sorted(row.cn for row in ca.issued()) == sorted(f"gate-{n}" for n in range(12))


def test_a_fleet_is_signed_in_one_batch_and_one_bad_csr_signs_none_of_it(ca: CertificateAuthority) -> None:
    certs = ca.sign_csrs([_csr(f"gate-{i}") for i in range(3)], kind="device",
                         expect_cns=["gate-0", "gate-1", "gate-2"])
    assert [common_name(c) for c in certs] == ["gate-0", "gate-1", "gate-2"]
    assert sorted(ca.active("device")) == ["gate-0", "gate-1", "gate-2"]
    ca.sign_csr(_csr("issuer"), kind="service")
    with pytest.raises(CAError, match="not a PEM"):
        ca.sign_csrs([_csr("gate-3"), b"not a csr"], kind="device")
    with pytest.raises(CAError, match="not 'gate-5'"):
        ca.sign_csrs([_csr("gate-4")], kind="device", expect_cns=["gate-5"])
    with pytest.raises(CAError, match="already a service identity"):  # names are one namespace, in a batch too
        ca.sign_csrs([_csr("gate-6"), _csr("issuer")], kind="device")
    assert [r.cn for r in ca.issued()] == ["gate-0", "gate-1", "gate-2", "issuer"]
