"""QR decoding with ZBar, through ``pyzbar`` (the design card's choice).

ZBar scans the image line by line, looking for the 1:1:3:1:1 dark/light runs of QR finder
patterns, and it looks for *dark* runs on a *light* background only.  A phone in dark mode shows
the opposite, which ZBar does not see at all, so this adapter tries the frame as it
is and, only if nothing was found, once more inverted (``numpy.invert``, about 0.03 ms for
1280x720).  The price is a second full scan on every frame without a code; ``citypass bench decode``
reports it (the ``no_code`` rows).

``pyzbar.pyzbar.decode`` is called with ``symbols=[ZBarSymbol.QRCODE]``, which disables the 1-D
decoders, so an EAN or Code 128 next to the QR code is never returned.

Corners: pyzbar returns the convex hull of ZBar's location points in image order, and ZBar's
orientation is only one of four directions, so the first corner is the code's top-left corner only
to the nearest quarter turn.

Example::

    >>> import numpy as np, segno
    >>> from citypass.gate.decoders.zbar import ZbarDecoder
    >>> qr = np.asarray(segno.make("CP1:HELLO", error="m", micro=False).matrix, dtype=np.uint8)
    >>> img = np.pad(np.kron(1 - qr, np.ones((6, 6), np.uint8)) * 255, 24, constant_values=255)
    >>> [d.text for d in ZbarDecoder().decode(img)]
    ['CP1:HELLO']
    >>> [d.text for d in ZbarDecoder().decode(255 - img)]  # dark mode, via the inverted retry
    ['CP1:HELLO']
    >>> ZbarDecoder(try_invert=False).decode(255 - img)
    []
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from pyzbar.pyzbar import ZBarSymbol
from pyzbar.pyzbar import decode as zbar_decode

from citypass.gate.decoders.base import Corners, Decoded, GrayImage, corners_from, to_gray

_QR_ONLY: Final = [ZBarSymbol.QRCODE]
_QUARTER_TURNS: Final = {"UP": 0, "RIGHT": 1, "DOWN": 2, "LEFT": 3}


class ZbarDecoder:
    """QR codes via ZBar; never raises, QR only, reads dark mode by retrying inverted."""

    def __init__(self, *, try_invert: bool = True, name: str = "zbar") -> None:
        self.name = name
        self._try_invert = try_invert

    def __repr__(self) -> str:
        return f"ZbarDecoder(try_invert={self._try_invert})"

    def decode(self, frame: np.ndarray) -> list[Decoded]:
        """Every QR code in *frame*; if none, every QR code in the inverted frame."""
        try:
            gray = to_gray(frame)
            if gray is None:
                return []
            found = self._scan(gray)
            if not found and self._try_invert:
                found = self._scan(np.invert(gray))
            return found
        except Exception:  # ctypes/zbar errors on a hostile frame must not stop the gate
            return []

    def _scan(self, gray: GrayImage) -> list[Decoded]:
        symbols = zbar_decode(gray, symbols=_QR_ONLY)
        out: list[Decoded] = []
        for sym in symbols:
            if sym.type != "QRCODE":
                continue
            out.append(Decoded(text=_text(sym.data), decoder=self.name, corners=_corners(sym)))
        return out


def _text(data: bytes) -> str:
    # ZBar already converts QR byte segments to UTF-8; anything undecodable becomes U+FFFD, which
    # simply fails credential parsing later instead of raising here.
    return data.decode("utf-8", errors="replace")


def _corners(sym: Any) -> Corners | None:
    hull = corners_from([(int(p.x), int(p.y)) for p in sym.polygon])
    if hull is None:
        return None
    # pyzbar's hull runs counter-clockwise on screen; make it clockwise, start at the image's
    # top-left-most point, then turn by ZBar's orientation so corner 0 is the code's top-left.
    cw = [hull[0], hull[3], hull[2], hull[1]]
    start = min(range(4), key=lambda i: cw[i][0] + cw[i][1])
    start = (start + _QUARTER_TURNS.get(str(sym.orientation), 0)) % 4
    p0, p1, p2, p3 = (cw[(start + i) % 4] for i in range(4))
    return (p0, p1, p2, p3)
