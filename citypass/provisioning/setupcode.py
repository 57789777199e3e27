"""Reading the setup QR (:mod:`citypass.credential.setupcode`) through the gate's own camera and decoder."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from citypass.credential.setupcode import PREFIX, SetupCode, SetupCodeError
from citypass.gate.camera import CameraConfig, open_camera
from citypass.gate.decoders import make_decoder


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
