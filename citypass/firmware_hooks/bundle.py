"""Signed update bundles: what ``citypass hooks install-check`` accepts, and how a release is built.

A bundle is a plain tar file in the shape RAUC and Mender use (a signed manifest, then the payload)::

    manifest.cose      COSE_Sign1 by a *release* key over the CBOR manifest below
    trust.cose         optional: the root-signed trust list that names the release key
    payload/<name>     the files being shipped (a rootfs image, a wheel, a migration script, ...)

The manifest lists every payload file with its SHA-256 and the bundle's version::

    {"v": 1, "product": "citypass-gate", "version": "1.4.0", "created_at": 1800000000,
     "files": {"citypass-1.4.0-py3-none-any.whl": h'9f86d0…'}}

Verification (:func:`verify_bundle`) trusts nothing inside the bundle until it has been checked, in
this order: the trust list must be signed by the pinned root key (the device's ``root_key``); the
manifest's signer must be listed there with role ``release`` and be valid now; the signature must
verify; the product must match; the version must not be lower than the installed one; and every
payload file must be listed, present once, a regular file and hash to the listed digest. Files are
hashed straight from the archive, never extracted first, so a refused bundle leaves nothing behind.

Example::

    >>> import io, tarfile, tempfile
    >>> from pathlib import Path
    >>> from citypass.credential.keys import SigningKey
    >>> from citypass.credential.trustlist import TrustedKey, TrustList
    >>> root, release = SigningKey.generate(), SigningKey.generate()
    >>> trust = TrustList(1, 0, (TrustedKey(release.kid, release.public, "release", 0),))
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = make_bundle(folder / "u.tar", {"app.whl": b"wheel bytes"}, "1.4.0", release,
    ...                 trust_signed=trust.sign(root), created_at=1)
    >>> verify_bundle(folder / "u.tar", root.public, installed="1.3.9").version
    '1.4.0'
    >>> verify_bundle(folder / "u.tar", root.public, installed="1.5.0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    citypass.firmware_hooks.bundle.BundleRefused: downgrade: bundle version 1.4.0 is older than the installed 1.5.0
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from citypass.credential.cose import FormatError, decode_cbor, encode_cbor, parse_sign1, sign1
from citypass.credential.keys import SigningKey, VerifyKey
from citypass.credential.trustlist import TrustError, TrustList
from citypass.errors import InvalidInput

FORMAT_VERSION = 1
PRODUCT = "citypass-gate"
MANIFEST_NAME = "manifest.cose"
TRUST_NAME = "trust.cose"
PAYLOAD_PREFIX = "payload/"
_CHUNK = 1 << 20
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class BundleRefused(InvalidInput):
    """The bundle must not be installed. ``reason`` is a stable snake_case code (for logs and tests):

    ``malformed``, ``untrusted_list``, ``no_trust_list``, ``not_release_key``, ``key_not_valid``,
    ``bad_signature``, ``wrong_product``, ``downgrade``, ``tampered``, ``missing_file``, ``unlisted_file``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.4.0"`` → ``(1, 4, 0)``; up to four numeric parts; anything else is refused.

    Numeric parts compare as numbers (1.10 is newer than 1.9) and missing parts count as zero, so
    ``1.4`` and ``1.4.0`` are the same version.

        >>> parse_version("1.10") > parse_version("1.9")
        True
        >>> parse_version("1.4") == parse_version("1.4.0")
        True
    """
    if not _VERSION.match(text):
        raise InvalidInput(f"version {text!r} is not numeric (like 1.4.0)")
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


@dataclass(frozen=True)
class Manifest:
    """What a release key vouches for: a product, a version and the SHA-256 of every payload file."""

    version: str
    created_at: int
    files: Mapping[str, bytes]
    product: str = PRODUCT

    def to_cbor(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, "product": self.product, "version": self.version,
                "created_at": self.created_at, "files": dict(self.files)}

    @classmethod
    def from_cbor(cls, obj: Any) -> Manifest:
        if not isinstance(obj, dict) or obj.get("v") != FORMAT_VERSION:
            raise FormatError("not a version 1 manifest")
        files = obj.get("files")
        version, product, created = obj.get("version"), obj.get("product"), obj.get("created_at")
        if not isinstance(files, dict) or not isinstance(version, str) or not isinstance(product, str):
            raise FormatError("manifest fields have the wrong types")
        if not isinstance(created, int) or isinstance(created, bool):
            raise FormatError("created_at must be an integer")
        for name, digest in files.items():
            if not isinstance(name, str) or not _SAFE_NAME.match(name):
                raise FormatError(f"bad file name {name!r}")
            if not isinstance(digest, bytes) or len(digest) != 32:
                raise FormatError(f"{name}: the digest must be 32 bytes of SHA-256")
        try:
            parse_version(version)
        except ValueError as exc:
            raise FormatError(str(exc)) from None
        return cls(version, created, dict(files), product)


def _hash(stream: IO[bytes]) -> bytes:
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.digest()


def make_bundle(out: Path, files: Mapping[str, bytes | Path], version: str, release_key: SigningKey, *,
                trust_signed: bytes | None = None, created_at: int | None = None,
                product: str = PRODUCT) -> Manifest:
    """Build and sign a bundle at ``out``: ``files`` maps payload names to their bytes or to a path.

    ``trust_signed`` (the root-signed trust list naming ``release_key``) is shipped inside the bundle,
    so a device that pins only the root key can verify it. Written to a temporary name and renamed.
    """
    parse_version(version)
    contents: dict[str, bytes] = {}
    for name, data in files.items():
        if not _SAFE_NAME.match(name):
            raise InvalidInput(f"payload name {name!r} must be a plain file name")
        contents[name] = data.read_bytes() if isinstance(data, Path) else data
    manifest = Manifest(version, int(time.time()) if created_at is None else created_at,
                        {n: hashlib.sha256(d).digest() for n, d in contents.items()}, product)
    signed = sign1(release_key, encode_cbor(manifest.to_cbor()))
    tmp = out.with_name(out.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        members = [(MANIFEST_NAME, signed)]
        if trust_signed is not None:
            members.append((TRUST_NAME, trust_signed))
        members += [(PAYLOAD_PREFIX + n, d) for n, d in sorted(contents.items())]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), manifest.created_at, 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return manifest


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int = 1 << 20) -> bytes:
    if member.size > limit:
        raise BundleRefused("malformed", f"{member.name} is implausibly large ({member.size} bytes)")
    stream = tar.extractfile(member)
    if stream is None:
        raise BundleRefused("malformed", f"{member.name} is not a regular file")
    return stream.read()


def _members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    found: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        if not member.isfile():
            raise BundleRefused("malformed", f"{member.name} is not a regular file (links and devices are refused)")
        if member.name in found:
            raise BundleRefused("malformed", f"{member.name} appears twice")
        found[member.name] = member
    return found


def _trust_list(tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo], root: VerifyKey,
                fallback: TrustList | None, min_trust_version: int) -> TrustList:
    if TRUST_NAME not in members:
        if fallback is None:
            raise BundleRefused("no_trust_list", "the bundle carries no trust list and the device has none")
        return fallback
    try:
        trust = TrustList.verify(_read_member(tar, members[TRUST_NAME]), root)
    except TrustError as exc:
        raise BundleRefused("untrusted_list", str(exc)) from None
    if trust.version < min_trust_version:
        # An old trust list may still name a release key that a newer one retired.
        raise BundleRefused("untrusted_list", f"trust list version {trust.version} is older than the "
                                              f"installed {min_trust_version}")
    return trust


def verify_bundle(path: Path, root: VerifyKey, *, installed: str | None, trust: TrustList | None = None,
                  min_trust_version: int = 0, now: int | None = None, product: str = PRODUCT) -> Manifest:
    """Check a bundle completely; return its :class:`Manifest` or raise :class:`BundleRefused`.

    ``root`` is the device's pinned root key. ``trust`` is the device's own trust list (from its ledger),
    used when the bundle carries none; a bundle's trust list older than ``min_trust_version`` is refused.
    ``installed`` is the running version (``None`` skips the downgrade check: first install).
    """
    when = int(time.time()) if now is None else now
    try:
        with tarfile.open(path, "r:*") as tar:
            return _verify_open(tar, root, installed, trust, min_trust_version, when, product)
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise BundleRefused("malformed", f"cannot read {path} as a bundle: {exc}") from None


def _verify_open(tar: tarfile.TarFile, root: VerifyKey, installed: str | None, trust: TrustList | None,
                 min_trust_version: int, when: int, product: str) -> Manifest:
    members = _members(tar)
    if MANIFEST_NAME not in members:
        raise BundleRefused("bad_signature", f"no {MANIFEST_NAME}: the bundle is unsigned")
    trusted = _trust_list(tar, members, root, trust, min_trust_version)
    try:
        message = parse_sign1(decode_cbor(_read_member(tar, members[MANIFEST_NAME])))
    except FormatError as exc:
        raise BundleRefused("bad_signature", f"{MANIFEST_NAME} is not a COSE_Sign1: {exc}") from None
    signer = trusted.find(message.kid, role="release")
    if signer is None:
        roles = [k.role for k in trusted.keys if k.kid == message.kid]
        what = f"a key with role {'/'.join(roles)}" if roles else "a key the trust list does not name"
        raise BundleRefused("not_release_key", f"the manifest is signed by {what} (kid {message.kid.hex()})")
    if when < signer.valid_from or (signer.valid_to is not None and when >= signer.valid_to):
        raise BundleRefused("key_not_valid", f"release key {message.kid.hex()} is not valid now")
    if not message.verify(signer.key):
        raise BundleRefused("bad_signature", "the manifest signature does not verify (forged or altered)")
    try:
        manifest = Manifest.from_cbor(decode_cbor(message.payload))
    except FormatError as exc:
        raise BundleRefused("malformed", f"signed manifest is unusable: {exc}") from None
    if manifest.product != product:
        raise BundleRefused("wrong_product", f"bundle is for {manifest.product!r}, this is {product!r}")
    if installed is not None and parse_version(manifest.version) < parse_version(installed):
        raise BundleRefused("downgrade", f"bundle version {manifest.version} is older than the installed {installed}")
    _check_payload(tar, members, manifest)
    return manifest


def _check_payload(tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo], manifest: Manifest) -> None:
    shipped = {n[len(PAYLOAD_PREFIX):]: m for n, m in members.items() if n.startswith(PAYLOAD_PREFIX)}
    extra = sorted(set(members) - {MANIFEST_NAME, TRUST_NAME} - {PAYLOAD_PREFIX + n for n in shipped})
    unlisted = sorted(set(shipped) - set(manifest.files)) + extra
    if unlisted:
        raise BundleRefused("unlisted_file", f"files not in the signed manifest: {', '.join(unlisted)}")
    missing = sorted(set(manifest.files) - set(shipped))
    if missing:
        raise BundleRefused("missing_file", f"listed files missing from the bundle: {', '.join(missing)}")
    for name, want in sorted(manifest.files.items()):
        stream = tar.extractfile(shipped[name])
        if stream is None or _hash(stream) != want:
            raise BundleRefused("tampered", f"payload/{name} does not match its SHA-256 in the manifest")
