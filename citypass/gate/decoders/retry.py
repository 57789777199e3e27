"""The gate's decoder: zxing-cpp first, and a second look only where a code is likely.

``RetryDecoder`` (registry name ``"retry"``, the default) reads every frame with zxing-cpp's local-average
binarizer — the plain ``"zxing"`` adapter's first pass — and returns what it reads.  Only when that pass
reads nothing does it spend more, and only where a code is likely (:mod:`citypass.gate.decoders.regions`):
a symbol zxing-cpp located but could not decode, or a patch of two-directional texture.  On each such
region (at most two per frame), cheapest first, until one reads:

1. **rectify** (located symbols): warp the symbol from its four corners onto an upright grid of four
   pixels per module, sharpen, read;
2. **upscale**: crop with a margin, scale so the region is 270 pixels wide (about four per module for a
   City Pass code), unsharp mask, read with the local and the global binarizer: a code held far away,
   slightly soft, or striped by moiré;
3. **rescale**: the same crop unsharpened, both binarizers (moiré and PWM bands the sharpening made worse);
4. **deblur**: if the crop is smeared in one direction (camera shake), Wiener-deconvolve along that
   direction at a few lengths around the estimated smear (:mod:`citypass.gate.decoders.restore`);
5. **flatten**: divide by the local light envelope (PWM bands, smudges, low light);
6. **finder**: with two finder patterns in sight and the third under a thumb, draw the third in at each
   place it can be (:mod:`citypass.gate.decoders.finders`);
7. **stack**: average the crop with the same place's failed crops from the last few frames
   (:mod:`citypass.gate.decoders.stack`) and read the mean, sharpened and flattened.

8. **global**: when all of that failed, the plain adapter's second full-frame pass (zxing-cpp's
   global-histogram binarizer), so that nothing zxing-cpp reads is lost.

That last pass runs only on frames with a likely region: on a frame with no code and nothing code-like in
it, the decoder costs one full-frame pass plus the texture search (a tenth of a pass) where the plain
adapter pays for two passes.

Costs are bounded per frame by construction (:func:`work_bound`): at most :data:`MAX_REGIONS` regions,
each with at most :data:`MAX_ATTEMPTS` zxing-cpp calls on a crop of at most :data:`MAX_CROP_PX` pixels and at
most three Wiener filters, then the one full-frame global-histogram pass; a static look-alike (a poster
behind the lane) is looked at only every eighth frame.  :attr:`RetryDecoder.work` counts what the last call
did, and the tests hold the bound with it.

Example::

    >>> import numpy as np, cv2, segno
    >>> from citypass.gate.decoders.retry import RetryDecoder
    >>> from citypass.gate.decoders.zxing import ZxingDecoder
    >>> qr = np.asarray(segno.make("CP1:" + "FAR" * 50, error="m", micro=False).matrix, dtype=np.uint8)
    >>> code = np.pad(np.kron(1 - qr, np.ones((8, 8), np.uint8)) * 255, 32, constant_values=255)
    >>> soft = cv2.GaussianBlur(code, (0, 0), 3.5)   # the camera's optics
    >>> small = cv2.resize(soft, None, fx=0.19, fy=0.19, interpolation=cv2.INTER_AREA)
    >>> frame = np.full((480, 640), 90, np.uint8)
    >>> frame[200:200 + small.shape[0], 300:300 + small.shape[1]] = small   # 1.5 px per module
    >>> ZxingDecoder().decode(frame)
    []
    >>> decoder = RetryDecoder()
    >>> [(d.text[:6], d.decoder) for d in decoder.decode(frame)]
    [('CP1:FA', 'retry:rectify')]
    >>> decoder.decode(np.full((480, 640), 90, np.uint8)), decoder.work.attempts  # nothing to look at again
    ([], 0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import zxingcpp

from citypass.gate.decoders.base import Corners, Decoded, GrayImage, to_gray
from citypass.gate.decoders.finders import complete
from citypass.gate.decoders.regions import Region, located_region, merge, texture_regions
from citypass.gate.decoders.restore import blur_length, deblur, flatten, rectify, smear, upscale
from citypass.gate.decoders.stack import FrameStack
from citypass.gate.decoders.zxing import ZxingDecoder, read

#: A region is scaled so that its longer side is this many pixels: about four per module for a City Pass
#: code's region (a version-7 symbol is 45 modules wide, version 11 61, plus the quiet zone), where
#: zxing-cpp's detector is at home and every step costs little.
REGION_SIDE: Final = 270
TYPICAL_MODULES: Final = 58  # modules across a region, quiet zone included, between versions 7 and 11
MARGIN: Final = 0.2  # crop this much of the region's size around it on each side (the boxes are coarse)
RECTIFIED_MODULE_PX: Final = 4.0
#: Below this isotropy (minor / major gradient energy) a crop counts as smeared and is deblurred.
SMEARED: Final = 0.6
#: Wiener filters tried on a smeared crop: (share of the estimated smear length, noise-to-signal ratio).
#: The estimate runs long (the autocorrelation's minimum lies a little beyond the smear); on the shaken
#: frames of the benchmark 0.8 of it read the most, half of it with more damping the next most.
DEBLUR_TRIES: Final = ((0.8, 0.005), (0.5, 0.03), (1.0, 0.01))
#: Smears estimated this long or longer (in modules) are not deblurred: no Wiener filter restores a grid
#: smeared over four modules, and on a phone swept into view the three filters would only delay the next frame.
MAX_SMEAR_MODULES: Final = 4
MAX_REGIONS: Final = 2
#: zxing-cpp calls per region at most: rectify 2, upscale 2, rescale 2, deblur 3, flatten 1, finder 6,
#: stack 2.
MAX_ATTEMPTS: Final = 18
#: The longest side of an image a retry hands zxing-cpp (a scaled crop with its margins, or a rectified
#: symbol, which gets fewer than four pixels per module if it would be larger), and its largest area.
MAX_SIDE: Final = round(REGION_SIDE * (1 + 2 * MARGIN))
MAX_CROP_PX: Final = MAX_SIDE**2
_LA, _GH = zxingcpp.Binarizer.LocalAverage, zxingcpp.Binarizer.GlobalHistogram


def work_bound(frame_px: int) -> tuple[int, int]:
    """The most zxing-cpp calls, and pixels they scan, that the second look spends on one frame of
    *frame_px* pixels, whatever is in it: every region's full ladder, then the full-frame pass."""
    return MAX_REGIONS * MAX_ATTEMPTS + 1, MAX_REGIONS * MAX_ATTEMPTS * MAX_CROP_PX + frame_px


@dataclass
class Work:
    """What the last :meth:`RetryDecoder.decode` call did, counted rather than timed."""

    frame_px: int = 0  # pixels in the frame (the first pass scans each once, at a few scales)
    regions: int = 0  # likely-code regions looked at again
    skipped: int = 0  # regions left alone (static look-alikes, or beyond MAX_REGIONS)
    attempts: int = 0  # zxing-cpp calls on restored crops
    retry_px: int = 0  # pixels those calls scanned
    wiener: int = 0  # Wiener deconvolutions (the costliest step)
    read_by: str | None = None  # "zxing" (first pass) or the step that read: "rectify", "upscale", …, "global"


@dataclass(frozen=True)
class _Crop:
    """A region's crop, scaled: ``img`` pixel (u, v) is frame pixel ``origin + (u, v) / factor``."""

    img: GrayImage
    origin: tuple[float, float]
    factor: float


class RetryDecoder:
    """zxing-cpp on every frame; a bounded second look at likely-code regions when it reads nothing.

    ``stack=False`` turns off combining crops across frames (each frame is then decoded on its own).
    """

    def __init__(self, *, stack: bool = True, name: str = "retry") -> None:
        self.name = name
        self.first = ZxingDecoder(fallback_binarizer=None, name=name)
        self.stack: FrameStack | None = FrameStack() if stack else None
        self.work = Work()

    def __repr__(self) -> str:
        return f"RetryDecoder(stack={self.stack is not None})"

    def decode(self, frame: np.ndarray) -> list[Decoded]:
        """Every QR code zxing-cpp reads in *frame*; failing that, what a second look at likely regions reads."""
        self.work = Work()
        try:
            gray = to_gray(frame)
            if gray is None:
                return []
            self.work.frame_px = gray.size
            found, located = self.first.scan(gray, located=True)
            if found:
                self.work.read_by = "zxing"
            else:
                evidence = [located_region(c, n) for c, n in located] + texture_regions(gray)
                found = self._second_look(gray, merge(evidence))
            if found and self.stack is not None:
                self.stack.clear()  # the code was read: the next one starts afresh
            return found
        except Exception:  # a library bug on a hostile frame must not stop the gate
            return []

    # -- the second look -------------------------------------------------------------------------------------
    def _second_look(self, gray: GrayImage, regions: list[Region]) -> list[Decoded]:
        if self.stack is not None:
            self.stack.tick()
        for n, region in enumerate(regions):
            if n >= MAX_REGIONS or (self.stack is not None and self.stack.skip(region)):
                self.work.skipped += 1
                continue
            self.work.regions += 1
            found = self._retry(gray, region)
            if found:
                return found
        if not self.work.regions:
            return []
        self.work.attempts += 1
        self.work.retry_px += gray.size
        found, _ = read(gray, _GH, name=self.name)
        if found:
            self.work.read_by = "global"
        return found

    def _retry(self, gray: GrayImage, region: Region) -> list[Decoded]:
        if region.quad is not None and region.modules is not None:
            module_px = min(RECTIFIED_MODULE_PX, MAX_SIDE / (region.modules + 8))
            square = _Crop(rectify(gray, region.quad, region.modules, module_px), (0.0, 0.0), 1.0)
            found = self._read(upscale(square.img, 1.0, sharpen=1.5), "rectify", square, both=True,
                               unwarp=(region.quad, region.modules))
            if found:
                return found
        place = self.stack.place(region) if self.stack is not None else region
        crop = _crop(gray, place)
        module = REGION_SIDE / TYPICAL_MODULES
        found = (self._read(upscale(crop.img, 1.0, sharpen=2.0), "upscale", crop, both=True)
                 or self._read(crop.img, "rescale", crop, both=True))
        if found:
            return found
        theta, isotropy = smear(crop.img)
        longest = math.ceil(MAX_SMEAR_MODULES * module)
        length = blur_length(crop.img, theta, longest) if isotropy < SMEARED else longest
        if length < longest:  # a smear of more modules than that (a phone swept into view) is beyond repair
            for share, nsr in DEBLUR_TRIES:
                smeared = max(2.0, share * length)
                self.work.wiener += 1
                found = self._read(deblur(crop.img, smeared, theta, nsr), "deblur", crop)
                if found:
                    return found
        found = self._read(flatten(crop.img, module, denoise=False), "flatten", crop)
        for completed in ([] if found else complete(crop.img)):
            found = self._read(completed, "finder", crop)
            if found:
                break
        if found or self.stack is None:
            return found
        mean = self.stack.add(place, crop.img)
        if mean is None:
            return []
        return (self._read(upscale(mean, 1.0, sharpen=2.0), "stack", crop)
                or self._read(flatten(mean, module, denoise=False), "stack", crop))

    def _read(self, img: GrayImage, step: str, crop: _Crop, both: bool = False,
              unwarp: tuple[Corners, int] | None = None) -> list[Decoded]:
        img = np.ascontiguousarray(img)
        for binarizer in (_LA, _GH) if both else (_LA,):
            self.work.attempts += 1
            self.work.retry_px += img.size
            found, _ = read(img, binarizer, try_downscale=False, name=f"{self.name}:{step}")
            if found:
                self.work.read_by = step
                # A rectified read's corners are the located symbol's own; a crop's map back by scale.
                back: Callable[[Corners | None], Corners | None] = (
                    (lambda _c: unwarp[0]) if unwarp is not None else (lambda c: _to_frame(c, crop)))
                return [Decoded(d.text, d.decoder, back(d.corners)) for d in found]
        return []


def _crop(gray: GrayImage, place: Region) -> _Crop:
    """*place* with a margin, scaled so its longer side is REGION_SIDE (the frame's edge repeated outside it)."""
    w, h = round(place.w * (1 + 2 * MARGIN)), round(place.h * (1 + 2 * MARGIN))
    side = max(w, h)
    if side > w * 2 or side > h * 2:  # never hand zxing-cpp a sliver: square it up
        w = h = side
    factor = REGION_SIDE * (1 + 2 * MARGIN) / side
    cx, cy = place.x + place.w / 2, place.y + place.h / 2
    raw = np.asarray(cv2.getRectSubPix(gray, (w, h), (cx, cy)), np.uint8)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    scaled = cv2.resize(raw, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    return _Crop(np.asarray(scaled, np.uint8), (cx - w / 2, cy - h / 2), factor)


def _to_frame(corners: Corners | None, crop: _Crop) -> Corners | None:
    """Corners in crop pixels back to frame pixels."""
    if corners is None:
        return None
    ox, oy = crop.origin
    p0, p1, p2, p3 = ((round(ox + x / crop.factor), round(oy + y / crop.factor)) for x, y in corners)
    return (p0, p1, p2, p3)
