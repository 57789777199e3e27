"""Where in a frame a QR code is likely: cheap evidence that decides whether a second look is worth it.

:class:`~citypass.gate.decoders.retry.RetryDecoder` spends extra work only on a frame whose first pass read
nothing *and* that shows a code-like region.  Two kinds of evidence name such regions:

1. **zxing-cpp's own failures.**  With ``return_errors=True`` the first pass also returns the symbols
   it located (three finder patterns, a sampled grid) but could not decode (a checksum error): the
   typical result for a code two pixels per module wide, in low light or behind a finger.  They cost
   nothing extra.
2. **Texture that looks like a QR code** (:func:`texture_regions`), for frames where zxing-cpp did not
   even find the finder patterns (motion blur smears them).  A QR code is a dense patch of edges in
   *two* directions; a 1-D barcode or a line of text has edges in one direction, a wall or a
   defocused background has few.  On a quarter-size copy of the frame (two 2x area reductions, which
   OpenCV special-cases), the gradient's structure tensor is averaged over 16x16-pixel cells: its
   trace is the edge energy, its coherence (``|λ1 - λ2| / (λ1 + λ2)``) is 1 for edges in one direction
   and near 0 for a grid of modules.  Cells with enough energy and low coherence are grouped into
   connected regions, and regions of a plausible size and shape are kept.  About 0.1-0.2 ms for a
   1280x720 frame, a tenth of the first pass.

Regions are axis-aligned boxes in frame pixels; :func:`merge` joins overlapping evidence so one code
is retried once.

Example::

    >>> import numpy as np, segno
    >>> from citypass.gate.decoders.regions import texture_regions
    >>> qr = np.asarray(segno.make("CP1:" + "A" * 170, error="m", micro=False).matrix, dtype=np.uint8)
    >>> frame = np.full((480, 640), 200, np.uint8)
    >>> frame[100:280, 300:480] = np.kron(1 - qr, np.ones((4, 4), np.uint8)) * 200
    >>> [(r.x, r.y, r.w, r.h) for r in texture_regions(frame)]
    [(288, 96, 208, 192)]
    >>> texture_regions(np.full((480, 640), 128, np.uint8))
    []
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import cv2
import numpy as np

from citypass.gate.decoders.base import Corners, GrayImage

#: Side of one texture cell in frame pixels (two 2x reductions, then 4x4 cells of the quarter image).
CELL: Final = 16
#: Mean squared gradient (quarter-size Sobel) a cell needs to count as "busy": edges of about 25 grey
#: levels' contrast.  And NOISE_FACTOR times the energy of the frame's quietest quarter of cells (its
#: sensor noise), so noise at high gain does not light up every cell.
MIN_ENERGY: Final = 600.0
NOISE_FACTOR: Final = 6.0
#: Coherence above this is one edge direction (text lines, 1-D barcodes, the edge of a phone).
MAX_COHERENCE: Final = 0.7
#: A region must cover this many cells (a version-7 code at 1.5 px/module is 68 px, about 4x4 cells),
#: be no more than twice as long as wide, and fill at least this share of its box.
MIN_CELLS: Final = 9
MAX_ASPECT: Final = 2.0
MIN_FILL: Final = 0.45

Source = Literal["zxing", "texture", "memory"]


@dataclass(frozen=True, slots=True)
class Region:
    """An axis-aligned box in frame pixels where a code is likely, and what said so.

    A region from zxing-cpp also carries the symbol's corners and module count, which allow a second
    look at the code rectified to a square grid.
    """

    x: int
    y: int
    w: int
    h: int
    source: Source
    quad: Corners | None = None
    modules: int | None = None

    @property
    def area(self) -> int:
        return self.w * self.h

    def overlaps(self, other: Region) -> bool:
        return (self.x < other.x + other.w and other.x < self.x + self.w
                and self.y < other.y + other.h and other.y < self.y + self.h)

    def union(self, other: Region) -> Region:
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1, y1 = max(self.x + self.w, other.x + other.w), max(self.y + self.h, other.y + other.h)
        best = self if _RANK[self.source] <= _RANK[other.source] else other
        return Region(x0, y0, x1 - x0, y1 - y0, best.source, best.quad, best.modules)

    def iou(self, other: Region) -> float:
        """Intersection over union of the two boxes (0 when disjoint)."""
        ix = max(0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        return inter / float(self.area + other.area - inter) if inter else 0.0


_RANK: Final[dict[Source, int]] = {"zxing": 0, "memory": 1, "texture": 2}


def _half(img: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA))


def texture_regions(gray: GrayImage) -> list[Region]:
    """Boxes of QR-like texture in *gray*, largest first (see the module docstring for the method)."""
    h, w = gray.shape
    if h < 4 * CELL or w < 4 * CELL:
        return []
    quarter = _half(_half(gray))
    gx = cv2.Sobel(quarter, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(quarter, cv2.CV_32F, 0, 1)
    jxx, jyy, jxy = (_half(_half(a)) for a in (gx * gx, gy * gy, gx * gy))
    energy = jxx + jyy
    flat = energy.ravel()
    quiet = float(np.partition(flat, flat.size // 4)[flat.size // 4])  # the quietest quarter: noise, not scene
    floor = max(MIN_ENERGY, NOISE_FACTOR * quiet)
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / (energy + 1e-3)
    mask = ((energy > floor) & (coherence < MAX_COHERENCE)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    found: list[Region] = []
    for x, y, bw, bh, cells in stats[1:count]:
        if cells < MIN_CELLS or max(bw, bh) > MAX_ASPECT * min(bw, bh) or cells < MIN_FILL * bw * bh:
            continue
        found.append(Region(int(x) * CELL, int(y) * CELL, int(bw) * CELL, int(bh) * CELL, "texture"))
    found.sort(key=lambda r: -r.area)
    return found


def located_region(corners: Corners, modules: int) -> Region:
    """The bounding box of a symbol zxing-cpp located, keeping its corners and module count."""
    xs, ys = zip(*corners, strict=True)
    return Region(min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1, "zxing", corners, modules)


def merge(regions: Sequence[Region]) -> list[Region]:
    """Join overlapping boxes (a code's partial zxing candidates and its texture box become one).

    The result is ordered by the strongest evidence first (zxing, then memory, then texture), larger first.
    """
    pending = list(regions)
    merged: list[Region] = []
    while pending:
        box = pending.pop(0)
        changed = True
        while changed:
            changed = False
            for other in list(pending):
                if box.overlaps(other):
                    box = box.union(other)
                    pending.remove(other)
                    changed = True
        merged.append(box)
    merged.sort(key=lambda r: (_RANK[r.source], -r.area))
    return merged
