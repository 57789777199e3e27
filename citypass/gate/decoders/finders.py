"""A QR code's finder patterns in a crop, and the third one redrawn where a thumb hides it.

A QR code is located by its three finder patterns (the 7x7-module squares in three corners); with one of
them under the visitor's thumb, zxing-cpp cannot even start, although the error correction could restore
the data modules the thumb covers.  Two finders fix the third's place up to a few possibilities: if they
share a side of the code, the third sits a side's length from one of them, square to that side; if they
are diagonal, it completes the right angle.  :func:`complete` draws a finder pattern (with its light
separator) at each possible place in turn, so the next zxing-cpp attempt has three finders to work with.
A wrong guess just fails to decode: a data region that is not the code's does not pass Reed-Solomon.

Finder patterns are found as OpenCV finds nested shapes: in the binarized crop, a dark square whose
contour holds a light square that holds a dark square, all roughly square (the alignment patterns are
nested the same way but 5 modules wide, so only the largest similar shapes count).

Example::

    >>> import numpy as np, segno
    >>> from citypass.gate.decoders.finders import finder_patterns
    >>> qr = np.asarray(segno.make("CP1:" + "A" * 100, error="m", micro=False).matrix, dtype=np.uint8)
    >>> img = np.pad(np.kron(1 - qr, np.ones((5, 5), np.uint8)) * 255, 20, constant_values=255)
    >>> len(finder_patterns(img))
    3
    >>> img[20:60, 20:60] = 255   # a thumb over the top-left finder
    >>> len(finder_patterns(img))
    2
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from citypass.gate.decoders.base import GrayImage


@dataclass(frozen=True, slots=True)
class Finder:
    """A finder pattern: its centre, the side of its outer square (7 modules) and its turn (radians)."""

    x: float
    y: float
    side: float
    angle: float
    dark: bool  # dark modules on light (False: dark mode)


def finder_patterns(crop: GrayImage) -> list[Finder]:
    """The finder patterns in *crop* (largest first), as nested dark-light-dark squares."""
    level, dark_ink = cv2.threshold(crop, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    found: list[Finder] = []
    # Both polarities: dark modules on a light screen, and light on dark (dark mode).
    for ink in (dark_ink, cv2.bitwise_not(dark_ink)):
        contours, hierarchy = cv2.findContours(ink, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        if hierarchy is None:
            continue
        links = hierarchy[0]
        for i, contour in enumerate(contours):
            child = int(links[i][2])
            grandchild = int(links[child][2]) if child >= 0 else -1
            if grandchild < 0:
                continue
            (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
            inner = cv2.contourArea(contours[grandchild])
            outer = cv2.contourArea(contour)
            # Square, and the core (3x3) about a fifth of the whole (7x7) in area: 9/49 = 0.18.
            if min(w, h) < 7 or max(w, h) > 1.3 * min(w, h) or not 0.08 < inner / max(outer, 1.0) < 0.35:
                continue
            core = float(crop[min(crop.shape[0] - 1, round(cy)), min(crop.shape[1] - 1, round(cx))])
            found.append(Finder(float(cx), float(cy), float(w + h) / 2, math.radians(angle), core < level))
    found.sort(key=lambda f: -f.side)
    if not found:
        return []
    # Alignment patterns are 5 modules wide to a finder's 7: keep the shapes close to the largest, one per place.
    kept: list[Finder] = []
    for f in found:
        if f.side >= 0.8 * found[0].side and all(math.hypot(f.x - k.x, f.y - k.y) > k.side / 2 for k in kept):
            kept.append(f)
    return kept


def third_places(a: Finder, b: Finder) -> Iterator[tuple[float, float]]:
    """Where the third finder can be, given two: square to their side from either end, or opposite
    their diagonal (the code's side is unknown, so both readings of the pair are offered)."""
    vx, vy = b.x - a.x, b.y - a.y
    px, py = -vy, vx
    for sign in (1, -1):
        yield a.x + sign * px, a.y + sign * py  # a, b share a side; a is the corner
        yield b.x + sign * px, b.y + sign * py  # … b is the corner
        yield (a.x + b.x) / 2 + sign * px / 2, (a.y + b.y) / 2 + sign * py / 2  # a, b are diagonal


def draw_finder(crop: GrayImage, like: Finder, x: float, y: float) -> GrayImage:
    """A copy of *crop* with a finder pattern like *like* (size, turn, polarity) centred at (x, y),
    on its one-module light separator."""
    out = crop.copy()
    module = like.side / 7
    ink, paper = (0, 255) if like.dark else (255, 0)
    c, s = math.cos(like.angle), math.sin(like.angle)
    for half, value in ((4.5, paper), (3.5, ink), (2.5, paper), (1.5, ink)):
        r = half * module
        corners: NDArray[np.float64] = np.array([[-r, -r], [r, -r], [r, r], [-r, r]]) @ np.array([[c, s], [-s, c]])
        points = np.round((corners + np.array([x, y])) * 16).astype(np.int32)
        cv2.fillConvexPoly(out, points, value, cv2.LINE_AA, shift=4)
    return out


def complete(crop: GrayImage) -> Iterator[GrayImage]:
    """*crop* with its missing third finder pattern drawn in, once per possible place; nothing unless
    exactly two finder patterns of one size are found (three need no help, one is too little)."""
    finders = finder_patterns(crop)
    if len(finders) != 2:
        return
    a, b = finders
    h, w = crop.shape
    for x, y in third_places(a, b):
        if -a.side / 2 <= x <= w + a.side / 2 and -a.side / 2 <= y <= h + a.side / 2:
            yield draw_finder(crop, a, x, y)
