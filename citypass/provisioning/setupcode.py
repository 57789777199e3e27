"""The setup QR: an enrollment a technician shows to the gate's own camera instead of typing it.

One line of text, rendered as a QR code by the issuer (``citypass issuer enrollment-qr``) and read by
``citypass provision enroll --from-camera`` through the gate's camera and decoder::

    CPENROLL:1|<issuer url>|<device id>|<root key id, hex>|<enrollment token>

The device id names the certificate the device asks for; the root key id lets the device check, before it
trusts anything the issuer sends, that the issuer answering is the one whose QR the technician holds.

>>> code = SetupCode("https://issuer.example", "gate-wl-e1", "1a2b", "cpe_0123456789ab_" + "x" * 43)
>>> SetupCode.parse(code.text()) == code
True
>>> SetupCode.parse("CP1:not-a-setup-code")
Traceback (most recent call last):
...
citypass.provisioning.setupcode.SetupCodeError: not a City Pass setup code (it does not start with CPENROLL:1|)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citypass.credential.qr import render_png
from citypass.gate.camera import CameraConfig, open_camera
from citypass.gate.decoders import make_decoder

PREFIX = "CPENROLL:1|"
_URL = re.compile(r"^https?://[^\s|]+$")
_DEVICE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
_KID = re.compile(r"^[0-9a-f]{0,64}$")
_TOKEN = re.compile(r"^cpe_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$")


class SetupCodeError(ValueError):
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
        for value, pattern, what in ((url, _URL, "issuer url"), (device, _DEVICE, "device id"),
                                     (kid, _KID, "root key id"), (token, _TOKEN, "enrollment token")):
            if not pattern.fullmatch(value):
                raise SetupCodeError(f"the setup code's {what} is malformed: {value[:60]!r}")
        return cls(url.rstrip("/"), device, kid, token)

    def render(self, out: Path, scale: int = 8) -> None:
        """Write the setup QR as a PNG (ECC M, like every City Pass code)."""
        render_png(self.text(), out, scale=scale)


def read_from_camera(camera: CameraConfig, decoder: str, *, timeout_s: float = 30.0,
                     on_wait: Callable[[float], None] | None = None) -> SetupCode:
    """Watch ``camera`` with the gate's own ``decoder`` until a setup code shows up (other codes are ignored).

    Raises :class:`SetupCodeError` after ``timeout_s`` with what the camera was doing, so a technician
    knows whether to fix the camera or hold the phone closer.
    """
    dec = make_decoder(decoder)
    deadline = time.monotonic() + timeout_s
    frames, seen = 0, ""
    with open_camera(camera, name="setup-camera") as cam:
        seq = 0
        while (left := deadline - time.monotonic()) > 0:
            frame = cam.wait_for_frame(after_seq=seq, timeout=min(0.5, left))
            if frame is None:
                if on_wait is not None:
                    on_wait(left)
                continue
            seq, frames = frame.seq, frames + 1
            for decoded in dec.decode(np.asarray(frame.image)):
                if decoded.text.startswith(PREFIX):
                    return SetupCode.parse(decoded.text)
                seen = decoded.text[:20]
        status = cam.status()
    if frames == 0:
        raise SetupCodeError(f"no frames from camera {camera.source!r} in {timeout_s:g} s: "
                             f"{status.last_error or status.state}")
    hint = f" (saw another code: {seen}…)" if seen else ""
    raise SetupCodeError(f"no setup code seen in {frames} frames over {timeout_s:g} s{hint}: "
                         "hold the setup QR 20-40 cm in front of the camera")
