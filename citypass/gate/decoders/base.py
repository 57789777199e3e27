"""The decoder interface: camera frame in, QR code texts out.

A decoder is any object with a ``name`` and a ``decode(frame)`` method; it is a
:class:`typing.Protocol`, so adapters do not inherit from anything and tests can pass a plain fake.
Every adapter in this package lives in its own module (``zxing.py``, ``zbar.py``) and obeys the same
three rules, which the gate daemon relies on:

1. **Never raise on an image.**  A camera can deliver an empty, truncated, 1x1, 16-bit or
   four-channel buffer; a crafted code can trip a library bug.  ``decode`` returns ``[]`` instead, so
   one bad frame never takes the gate down.
2. **QR codes only.**  A phone can show a shop's EAN or a Code 128 boarding pass next to the City
   Pass; those are not ours and are not returned.
3. **Grey in, cheaply.**  Frames are 8-bit grey ``(h, w)`` or BGR ``(h, w, 3)`` (BGRA and ``(h, w, 1)``
   are accepted too); :func:`to_gray` converts once with OpenCV (about 0.3 ms for 1280x720).

Example::

    >>> import numpy as np
    >>> from citypass.gate.decoders.base import Decoded, Decoder, to_gray
    >>> class Nothing:
    ...     name = "nothing"
    ...     def decode(self, frame: np.ndarray) -> list[Decoded]:
    ...         return []
    >>> isinstance(Nothing(), Decoder)
    True
    >>> to_gray(np.zeros((480, 640, 3), np.uint8)).shape
    (480, 640)
    >>> to_gray(np.zeros((1, 1), np.uint8)) is None  # too small to hold any QR code
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
from numpy.typing import NDArray

Point = tuple[int, int]
Corners = tuple[Point, Point, Point, Point]
GrayImage = NDArray[np.uint8]

#: Smaller than this (in either dimension) cannot hold a version-1 QR code at one pixel per module
#: with its quiet zone; such frames are rejected before any library sees them.
MIN_SIDE = 21


@dataclass(frozen=True, slots=True)
class Decoded:
    """One QR code read from a frame.

    ``text`` is the decoded content; ``decoder`` names the adapter that read it (useful in logs and
    in the chain); ``corners`` are the symbol's corners in frame pixels, clockwise from the top-left
    of the code as printed (top-left, top-right, bottom-right, bottom-left), or None when the library
    did not report four of them.
    """

    text: str
    decoder: str
    corners: Corners | None = None


@runtime_checkable
class Decoder(Protocol):
    """Reads QR codes from a camera frame; see the module docstring for the contract."""

    name: str

    def decode(self, frame: np.ndarray) -> list[Decoded]:
        """All QR codes readable in *frame* (8-bit grey or BGR); ``[]`` if none or on any error."""
        ...


def to_gray(frame: object) -> GrayImage | None:
    """*frame* as a C-contiguous 2-D uint8 array, or None if it is not a usable 8-bit image.

    Grey frames are passed through without copying when already contiguous; BGR and BGRA use
    ``cv2.cvtColor`` (ITU-R BT.601 luma, as the camera encoder does).  Anything else (wrong dtype,
    wrong number of channels, fewer than ``MIN_SIDE`` pixels on a side, not an array) gives None.
    """
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        return None
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        gray = frame
    elif frame.ndim == 3 and frame.shape[2] in (3, 4):
        if frame.shape[0] < MIN_SIDE or frame.shape[1] < MIN_SIDE:
            return None
        code = cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        gray = np.asarray(cv2.cvtColor(np.ascontiguousarray(frame), code), dtype=np.uint8)
    else:
        return None
    if gray.shape[0] < MIN_SIDE or gray.shape[1] < MIN_SIDE:
        return None
    return np.ascontiguousarray(gray)


def corners_from(points: list[tuple[int, int]]) -> Corners | None:
    """Four integer points as a ``Corners`` tuple; None unless there are exactly four."""
    if len(points) != 4:
        return None
    p0, p1, p2, p3 = ((int(x), int(y)) for x, y in points)
    return (p0, p1, p2, p3)
