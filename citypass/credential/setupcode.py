"""The setup QR's format: an enrollment a technician shows to the gate's own camera instead of typing it.

One line of text, rendered as a QR code by the issuer (``citypass issuer enrollment-qr``) and read by
``citypass provision enroll --from-camera`` through the gate's camera and decoder
(:func:`citypass.provisioning.setupcode.read_from_camera`)::

    CPENROLL:1|<issuer url>|<device id>|<root key id, hex>|<enrollment token>

The device id names the certificate the device asks for; the root key id lets the device check, before it
trusts anything the issuer sends, that the issuer answering is the one whose QR the technician holds.

>>> code = SetupCode("https://issuer.example", "gate-wl-e1", "1a2b", "cpe_0123456789ab_" + "x" * 43)
>>> SetupCode.parse(code.text()) == code
True
>>> SetupCode.parse("CP1:not-a-setup-code")
Traceback (most recent call last):
...
citypass.credential.setupcode.SetupCodeError: not a City Pass setup code (it does not start with CPENROLL:1|)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from citypass.credential.devices import DEVICE_ID_RE
from citypass.errors import InvalidInput

PREFIX = "CPENROLL:1|"
_URL = re.compile(r"^https?://[^\s|]+$")
_KID = re.compile(r"^[0-9a-f]{0,64}$")
_TOKEN = re.compile(r"^cpe_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$")


class SetupCodeError(InvalidInput):
    """Text that is not a setup code, or no setup code seen by the camera in time."""


@dataclass(frozen=True)
class SetupCode:
    issuer: str
    device_id: str
    root_kid: str  # hex; empty when the issuer did not say
    token: str

    def text(self) -> str:
        return PREFIX + "|".join((self.issuer, self.device_id, self.root_kid, self.token))

    @classmethod
    def parse(cls, text: str) -> SetupCode:
        if not text.startswith(PREFIX):
            raise SetupCodeError(f"not a City Pass setup code (it does not start with {PREFIX})")
        parts = text[len(PREFIX):].split("|")
        if len(parts) != 4:
            raise SetupCodeError("a setup code has four fields: issuer url, device id, root key id, token")
        url, device, kid, token = parts
        for value, pattern, what in ((url, _URL, "issuer url"), (device, DEVICE_ID_RE, "device id"),
                                     (kid, _KID, "root key id"), (token, _TOKEN, "enrollment token")):
            if not pattern.fullmatch(value):
                raise SetupCodeError(f"the setup code's {what} is malformed: {value[:60]!r}")
        return cls(url.rstrip("/"), device, kid, token)

    def render(self, out: Path, scale: int = 8) -> None:
        """Write the setup QR as a PNG (ECC M, like every City Pass code)."""
        from citypass.credential.qr import render_png  # segno loads only when a QR is drawn

        render_png(self.text(), out, scale=scale)
