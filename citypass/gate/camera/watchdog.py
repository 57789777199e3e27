"""The frame-age watchdog's parts: status, frozen-frame fingerprint, fps window and reopen backoff.

A camera rarely fails loudly. Unplug a USB camera and OpenCV's ``read()`` may block forever, or keep
returning success with the last picture it had; an RTSP camera that reboots leaves FFmpeg waiting on
a socket. So, like Frigate, the gate does not trust the driver's return codes: it watches the *age of
the newest new frame* and declares the camera out of order when that age passes a threshold.

This module holds the small, clock-driven pieces of that watchdog so they can be tested with a fake
clock; :mod:`citypass.gate.camera.grabber` wires them to threads.

    >>> t = [0.0]
    >>> window = FpsWindow(window_s=1.0, clock=lambda: t[0])
    >>> for i in range(11):
    ...     t[0] = i * 0.1
    ...     window.tick()
    >>> round(window.fps(), 1)
    10.0
    >>> b = Backoff(0.5, 4.0)
    >>> [b.next_delay() for _ in range(5)]
    [0.5, 1.0, 2.0, 4.0, 4.0]
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from citypass.gate.camera.base import Image

CameraState = Literal["starting", "ok", "out_of_order", "stopped"]

# Sample every 8th row and column: ~1/64 of the pixels, so a 1280x720 frame costs a ~43 KB crc32
# (tens of microseconds) instead of 2.7 MB. A live sensor's noise touches every pixel, so two frames
# of a working camera practically never agree on all the samples; a frozen one agrees on all of them.
_STRIDE = 8


def frame_fingerprint(image: Image) -> int:
    """A cheap hash of a subsampled picture, equal for byte-identical frames.

    Used to notice a *frozen* camera (one that keeps delivering the same picture). Two different
    frames can collide only if they differ solely in pixels between the samples, which real sensor
    noise makes practically impossible; shape and dtype are part of the hash.

        >>> a = np.zeros((720, 1280, 3), np.uint8)
        >>> frame_fingerprint(a) == frame_fingerprint(a.copy())
        True
        >>> b = a.copy(); b[8, 8, 0] = 1
        >>> frame_fingerprint(a) == frame_fingerprint(b)
        False
    """
    sample = np.ascontiguousarray(image[::_STRIDE, ::_STRIDE])
    header = f"{image.shape}{image.dtype}".encode()
    return zlib.crc32(sample.tobytes(), zlib.crc32(header))


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """A snapshot of the camera's health, safe to hand to another thread, a log or a health report.

    ``state``
        ``"starting"`` until the first frame, ``"ok"`` while new frames flow, ``"out_of_order"``
        after the watchdog or an error gave up on the source (it keeps reopening), ``"stopped"``
        after ``close()``.
    ``fps``
        Frames captured per second over the last couple of seconds (0.0 when none).
    ``last_frame_age_s``
        Seconds since the newest frame was captured, ``None`` if there never was one.
    ``restarts``
        How many times the source was reopened after a failure.
    ``dropped``
        Frames that were replaced by a newer one before any consumer took them.
    ``last_error``
        The most recent failure, in words. It is kept after recovery, for diagnosis.
    """

    state: CameraState
    fps: float
    last_frame_age_s: float | None
    restarts: int
    dropped: int
    last_error: str | None


class FpsWindow:
    """Frames per second over a sliding window of recent capture times.

    The rate decays to zero when frames stop, because old timestamps fall out of the window when the
    rate is read, not only when a frame arrives. Not thread-safe; the grabber calls it under its lock.
    """

    def __init__(self, window_s: float = 2.0, clock: Callable[[], float] | None = None) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()

    def tick(self, at: float | None = None) -> None:
        """Record one frame captured at ``at`` (default: now)."""
        now = self._now() if at is None else at
        self._times.append(now)
        self._prune(now)

    def fps(self, now: float | None = None) -> float:
        """The rate over the window ending at ``now`` (default: the clock's now)."""
        now = self._now() if now is None else now
        self._prune(now)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        # n timestamps bound n-1 intervals; measuring between first and last avoids a bias when the
        # window is only partly filled (just after start or a reopen).
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        while self._times and self._times[0] < horizon:
            self._times.popleft()

    def _now(self) -> float:
        if self._clock is None:
            raise ValueError("FpsWindow has no clock; pass the time explicitly")
        return self._clock()


class Backoff:
    """Exponential backoff between reopen attempts: min, 2*min, 4*min, ... capped at max.

    A camera that is unplugged for an hour should not be hammered ten times a second (each failed
    V4L2 open logs a kernel message, each RTSP attempt a connection on a busy NVR); one that merely
    hiccupped should be back within a fraction of a second. ``reset()`` after a good frame.
    """

    def __init__(self, min_s: float, max_s: float) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"need 0 < min_s <= max_s, got {min_s} and {max_s}")
        self.min_s = min_s
        self.max_s = max_s
        self._next = min_s

    def next_delay(self) -> float:
        """The wait before the next attempt; each call doubles the one after, up to ``max_s``."""
        delay = self._next
        self._next = min(self._next * 2, self.max_s)
        return delay

    def reset(self) -> None:
        """Start again from ``min_s`` (the source works again)."""
        self._next = self.min_s
