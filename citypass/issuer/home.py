"""The issuer's home directory: key files and the store, in one place a backup can copy.

Layout::

    HOME/
      issuer.db              SQLite store (sites, keys, credentials, revocations, meta) — the embedded default
      database.url           or: the PostgreSQL database the store is in (``issuer init --database``)  0600
      root.pub               the root public key — pin this on gates
      keys/root.key          root private key (signs trust lists)            0600
      keys/issuer-KID.key    issuer signing keys (sign credentials)          0600
      keys/ledger-KID.key    ledger signing key (signs snapshots and deltas) 0600

Private keys may be encrypted with a passphrase (PKCS#8, ``BestAvailableEncryption``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from citypass.credential.filemodes import private_file
from citypass.credential.keys import SigningKey, read_private_key, write_private_key, write_public_key
from citypass.errors import Unavailable


class HomeError(Unavailable):
    """The issuer home is missing, incomplete or unreadable."""


@dataclass(frozen=True)
class IssuerHome:
    path: Path
    passphrase: bytes | None = None

    @property
    def db_path(self) -> Path:
        return self.path / "issuer.db"

    @property
    def database_url_path(self) -> Path:
        return self.path / "database.url"

    def database_url(self) -> str | None:
        """The PostgreSQL URL this home's store is in, or None for the SQLite file."""
        try:
            return self.database_url_path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def save_database_url(self, url: str) -> None:
        """Record the database (0600: a URL may carry a password)."""
        private_file(self.database_url_path).write_text(url + "\n", encoding="utf-8")

    @property
    def keys_dir(self) -> Path:
        return self.path / "keys"

    @property
    def root_pub_path(self) -> Path:
        return self.path / "root.pub"

    def key_path(self, role: str, kid: bytes) -> Path:
        if role == "root":
            return self.keys_dir / "root.key"
        return self.keys_dir / f"{role}-{kid.hex()}.key"

    def exists(self) -> bool:
        return self.db_path.exists() or self.database_url_path.exists()

    def require(self) -> None:
        if not self.exists():
            raise HomeError(f"{self.path} is not an issuer home (run: citypass issuer init --home {self.path})")

    def save_key(self, role: str, key: SigningKey) -> Path:
        path = self.key_path(role, key.kid)
        write_private_key(path, key, self.passphrase)
        if role == "root":
            write_public_key(self.root_pub_path, key.public)
        return path

    def load_key(self, role: str, kid: bytes) -> SigningKey:
        path = self.key_path(role, kid)
        try:
            return read_private_key(path, self.passphrase)
        except FileNotFoundError:
            raise HomeError(f"missing key file {path}") from None
        except (TypeError, ValueError) as exc:
            raise HomeError(f"cannot load {path}: {exc} (wrong or missing passphrase?)") from None
