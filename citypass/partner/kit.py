"""A partner platform's home and its minting: ``citypass partner init|descriptor|set-number|mint``.

Layout of a partner home (the private key is 0600 in a 0700 directory)::

    partner.json        {"id", "name_zh", "name_en", "alg", "number"}   (number: given by the city)
    keys/partner.pem    the private key (SM2 or Ed25519/P-256, PKCS#8 PEM)

Example::

    >>> import tempfile, pathlib
    >>> home = PartnerHome.init(pathlib.Path(tempfile.mkdtemp()) / "p", "demo-bus", "示例公交", "Demo Bus", "ed25519")
    >>> sorted(home.descriptor())
    ['id', 'keys', 'name_en', 'name_zh']
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citypass.credential import gm1
from citypass.credential.claims import Annual, Credential, Group, Reservation, Terms, Transit
from citypass.credential.codes import issue
from citypass.credential.filemodes import private_dir, private_file
from citypass.credential.keys import Alg, SigningKey, kid_for
from citypass.credential.partners import ID_PATTERN, PARTNER_ALGS
from citypass.credential.sm2 import SM2SigningKey
from citypass.errors import InvalidInput


class PartnerKitError(InvalidInput):
    """A partner home that is missing, or a request it cannot serve."""


@dataclass
class PartnerHome:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "partner.json"

    @property
    def key_path(self) -> Path:
        return self.path / "keys" / "partner.pem"

    @classmethod
    def init(cls, path: Path, partner_id: str, name_zh: str, name_en: str, alg: str = "sm2") -> PartnerHome:
        if not re.match(ID_PATTERN, partner_id):
            raise PartnerKitError("a partner id is a slug: lower-case letters, digits, - and _")
        if alg not in PARTNER_ALGS:
            raise PartnerKitError(f"alg is one of {', '.join(PARTNER_ALGS)}")
        home = cls(path)
        if home.config_path.exists():
            raise PartnerKitError(f"{path} is already a partner home")
        private_dir(path)
        private_dir(path / "keys")
        pem = SM2SigningKey.generate().pem() if alg == "sm2" else SigningKey.generate(Alg.from_name(alg)).pem()
        private_file(home.key_path).write_bytes(pem)
        home._write({"id": partner_id, "name_zh": name_zh, "name_en": name_en, "alg": alg, "number": None})
        return home

    def _write(self, config: dict[str, Any]) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.config_path)

    def config(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PartnerKitError(f"{self.path} is not a partner home (run `citypass partner init`)") from None
        return data

    def set_number(self, number: int) -> None:
        """Record the platform number the city assigned when it admitted us (GM1 codes carry it)."""
        if not 1 <= number < 2**32:
            raise PartnerKitError("a platform number is 1..2**32-1")
        self._write(self.config() | {"number": number})

    def key(self) -> SM2SigningKey | SigningKey:
        pem = self.key_path.read_bytes()
        return SM2SigningKey.from_pem(pem) if self.config()["alg"] == "sm2" else SigningKey.from_pem(pem)

    def descriptor(self) -> dict[str, Any]:
        """What the partner sends the city to be admitted: id, names and public key (no secret)."""
        cfg, key = self.config(), self.key()
        pub: bytes = key.public.raw
        return {"id": cfg["id"], "name_zh": cfg["name_zh"], "name_en": cfg["name_en"],
                "keys": [{"alg": cfg["alg"], "pub": pub.hex()}]}

    def mint(self, credential: Credential) -> str:
        """A code for ``credential``: GM1 with an SM2 key, CP1 with an Ed25519/P-256 key."""
        key = self.key()
        if isinstance(key, SigningKey):
            return issue(credential, key)
        number = self.config().get("number")
        if not number:
            raise PartnerKitError("the city has not given us a platform number yet (citypass partner set-number)")
        return gm1.encode(to_gm1(credential, int(number), key), key)


def to_gm1(cred: Credential, platform: int, key: SM2SigningKey) -> gm1.GM1Code:
    """A credential in our claims model as a GM1 code's fields (validity is required in GM1)."""
    if cred.valid_from is None or cred.valid_to is None or len(cred.id) != 8:
        raise PartnerKitError("a GM1 code needs a validity window and an 8-byte id")
    t: Terms = cred.terms
    fields: dict[str, Any] = {}
    if isinstance(t, Annual):
        fields = {"sites": tuple(sorted(t.sites))}
    elif isinstance(t, Reservation):
        fields = {"sites": (t.venue,), "party": t.party, "grace": t.grace_minutes}
    elif isinstance(t, Transit):
        fields = {"account": t.account, "modes": int(t.modes)}
    elif isinstance(t, Group):
        fields = {"sites": (t.site,), "party": t.party}
    return gm1.GM1Code(platform, kid_for(key.public.raw), cred.product, cred.id, cred.valid_from, cred.valid_to,
                       **fields)


__all__ = ["PartnerHome", "PartnerKitError", "to_gm1"]
