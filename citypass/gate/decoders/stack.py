"""Across frames: the same code is in view for many frames, so combine what a single frame cannot read.

A visitor holds the phone up for a second or more: thirty frames of the same code, each with fresh
sensor noise, the screen's refresh bands in a new place and the hand's tremor in a new direction.
:class:`FrameStack` remembers, for the last few frames, the crops that
:class:`~citypass.gate.decoders.retry.RetryDecoder` looked at again and still could not read.  When a new
frame shows a likely code in the same place, its crop is aligned to the remembered ones (phase
correlation: the sub-pixel shift between the two, and how much they agree) and averaged with them.  The
average has less noise (by √n after n frames) and flatter bands, so a code too dark or too striped to
read in any one frame can be read in their mean.

Costs are bounded: at most :data:`MAX_TRACKS` places are remembered, each for :data:`MAX_AGE` frames
without a new match, with at most :data:`MAX_FRAMES` frames averaged.  A place whose picture does not change
at all (a poster behind the lane that happens to look like a code) is marked *static* after a few
failures, and :class:`RetryDecoder` then looks at it only every :data:`STATIC_EVERY` frames.

Example::

    >>> import numpy as np
    >>> from citypass.gate.decoders.regions import Region
    >>> from citypass.gate.decoders.stack import FrameStack
    >>> stack, rng = FrameStack(), np.random.default_rng(0)
    >>> clean = np.kron(rng.integers(0, 2, (20, 20)), np.ones((6, 6))).astype(np.float32) * 200
    >>> noisy = lambda: np.clip(clean + rng.normal(0, 60, clean.shape), 0, 255).astype(np.uint8)
    >>> box = Region(100, 100, 120, 120, "texture")
    >>> stack.add(box, noisy()) is None  # the first frame: nothing to combine yet
    True
    >>> for _ in range(3):
    ...     mean = stack.add(box, noisy())
    >>> float(np.abs(mean.astype(np.float32) - clean).mean()) < 30  # noise ~48 per frame, ~24 after 4
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from citypass.gate.decoders.base import GrayImage
from citypass.gate.decoders.regions import Region

MAX_TRACKS: Final = 3
MAX_AGE: Final = 3  # frames a remembered place survives without a matching region
MAX_FRAMES: Final = 6  # frames averaged at most (older ones are dropped from the running mean)
#: Boxes at least this much overlapping are the same place (a hand moves a code a little between frames).
MIN_IOU: Final = 0.3
#: Phase correlation's peak (0..1) below this means the crops do not show the same picture.
MIN_AGREEMENT: Final = 0.08
#: A place that failed this many times with an unchanging picture is static, retried every STATIC_EVERY.
STATIC_AFTER: Final = 4
STATIC_EVERY: Final = 8
_STATIC_DIFF = 3.0  # mean absolute difference (grey levels) of quarter-size crops: unchanged


@dataclass
class Track:
    """One remembered place: its latest box, the aligned crops, and how often it failed unchanged."""

    region: Region
    crops: list[NDArray[np.float32]] = field(default_factory=list)
    age: int = 0
    unchanged: int = 0
    seen: int = 0

    @property
    def static(self) -> bool:
        return self.unchanged >= STATIC_AFTER


class FrameStack:
    """Crops of likely codes that failed, remembered for a few frames and averaged when they recur."""

    def __init__(self) -> None:
        self.tracks: list[Track] = []

    def tick(self) -> None:
        """A new frame: age every track and forget the ones not seen for :data:`MAX_AGE` frames."""
        for t in self.tracks:
            t.age += 1
        self.tracks = [t for t in self.tracks if t.age <= MAX_AGE]

    def clear(self) -> None:
        """Forget everything (a code was read: the next one starts afresh)."""
        self.tracks.clear()

    def find(self, region: Region) -> Track | None:
        """The remembered place this region continues, if any."""
        best = max(self.tracks, key=lambda t: t.region.iou(region), default=None)
        return best if best is not None and best.region.iou(region) >= MIN_IOU else None

    def place(self, region: Region) -> Region:
        """The box to crop for *region*: the remembered place's size centred on the region, so crops of
        one place stay the same size from frame to frame (the region itself when nothing is remembered)."""
        track = self.find(region)
        if track is None:
            return region
        old = track.region
        cx, cy = region.x + region.w // 2, region.y + region.h // 2
        return Region(cx - old.w // 2, cy - old.h // 2, old.w, old.h, region.source)

    def skip(self, region: Region) -> bool:
        """Whether this region is a static non-code to leave alone on this frame."""
        track = self.find(region)
        if track is None or not track.static:
            return False
        track.seen += 1
        track.age = 0
        return track.seen % STATIC_EVERY != 0

    def add(self, region: Region, crop: GrayImage) -> GrayImage | None:
        """Remember *crop* (which failed) for *region*; return the mean of it and the aligned crops
        remembered for the same place, or None when there is nothing to combine it with."""
        track = self.find(region)
        sample = crop.astype(np.float32)
        if track is None or not track.crops or track.crops[-1].shape != sample.shape:
            self._start(region, sample)
            return None
        last = track.crops[-1]
        (dx, dy), agreement = cv2.phaseCorrelate(last, sample, _window(sample.shape))
        if agreement < MIN_AGREEMENT:
            self._start(region, sample, replace=track)
            return None
        shift = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
        aligned = np.asarray(cv2.warpAffine(sample, shift, (sample.shape[1], sample.shape[0]),
                                            borderMode=cv2.BORDER_REPLICATE), np.float32)
        if _quarter_diff(last, aligned) < _STATIC_DIFF:
            track.unchanged += 1
        else:
            track.unchanged = 0
        track.crops = [*track.crops[-(MAX_FRAMES - 1):], aligned]
        track.region, track.age = region, 0
        mean = np.mean(track.crops, axis=0)
        return np.asarray(np.clip(mean, 0, 255), np.uint8)

    def _start(self, region: Region, sample: NDArray[np.float32], replace: Track | None = None) -> None:
        if replace is not None:
            self.tracks.remove(replace)
        self.tracks.append(Track(region, [sample]))
        self.tracks = self.tracks[-MAX_TRACKS:]


_WINDOWS: dict[tuple[int, ...], NDArray[np.float32]] = {}


def _window(shape: tuple[int, ...]) -> NDArray[np.float32]:
    """A Hanning window for phase correlation (edges would otherwise dominate the spectrum); cached."""
    win = _WINDOWS.get(shape)
    if win is None:
        win = np.asarray(cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F), np.float32)
        if len(_WINDOWS) > 16:
            _WINDOWS.clear()
        _WINDOWS[shape] = win
    return win


def _quarter_diff(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    size = (max(1, a.shape[1] // 4), max(1, a.shape[0] // 4))
    qa = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
    qb = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
    return float(np.abs(qa - qb).mean())
