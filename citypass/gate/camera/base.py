"""The camera interface: what every frame source looks like, and what a captured frame is.

A gate needs frames, not cameras. Everything the rest of the gate knows about a camera is the small
:class:`FrameSource` protocol below, in the spirit of gpiozero's pin factories: the adapters
(``opencv.py`` for V4L2 devices, video files and RTSP/HTTP streams, ``images.py`` for a directory of
pictures, ``memory.py`` for frames pushed by another thread) each live in their own file, and tests
inject a ten-line fake instead of patching OpenCV.

A source is deliberately dumb. It opens, hands back the next picture (blocking for as long as the
device takes), and closes. It does not run threads, keep the latest frame, measure fps or notice that
the camera froze: that is the job of :class:`~citypass.gate.camera.grabber.FrameGrabber`, which works the same
way over every source. Keeping the adapters dumb is what makes them one-screen files.

Writing a source is a matter of four members::

    >>> import numpy as np
    >>> class GreySource:
    ...     describe = "grey:320x240"
    ...     def open(self) -> None:
    ...         self.level = 0
    ...     def read(self) -> Image | None:
    ...         self.level = (self.level + 1) % 256
    ...         return np.full((240, 320, 3), self.level, dtype=np.uint8)
    ...     def close(self) -> None:
    ...         pass
    >>> isinstance(GreySource(), FrameSource)
    True
    >>> src = GreySource(); src.open(); int(src.read()[0, 0, 0]); src.close()
    1

Ownership and threads: the grabber creates a *fresh* source object for every (re)open and calls
``open()``, ``read()`` and ``close()`` on it from one thread only. Adapters therefore need no locks,
and a reader thread that is stuck inside a driver call never shares its source with its replacement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from citypass.errors import Unavailable

#: A picture as OpenCV hands it over: ``height x width x 3`` BGR (or ``height x width`` grey) bytes.
Image = npt.NDArray[np.uint8]


class SourceError(Unavailable):
    """A frame source cannot do its job: the device, file or stream is missing or broken.

    The message is shown to technicians verbatim (it becomes ``CameraStatus.last_error``), so it
    should name the source and say what is wrong, e.g. ``"no such file: /media/gate.mp4"``. Stream
    adapters must not put passwords from the URL into it.
    """


@runtime_checkable
class FrameSource(Protocol):
    """Anything that yields pictures: a camera, a video file, a folder of images, a queue.

    The contract:

    ``describe``
        A short human-readable name for logs and status pages, e.g. ``"v4l2:/dev/video0 1280x720@30"``.
        It never contains credentials.
    ``open()``
        Acquire the device. Raises :class:`SourceError` (or any exception; the grabber treats them
        alike) with a clear message when that is impossible. It may block, e.g. while an RTSP
        server is slow to answer; the grabber watches the clock meanwhile.
    ``read()``
        Return the next picture, blocking until it is there. Return ``None`` when there is no
        picture *right now* (a dropped USB frame, the end of a non-looping file, an idle queue); the
        grabber retries and its watchdog decides when "no picture" has lasted too long. Raise when
        the source is definitely broken.
    ``close()``
        Release the device. Must be safe to call after a failed ``open()`` and more than once.
    """

    @property
    def describe(self) -> str:
        """A short name for logs and status, without credentials."""
        ...

    def open(self) -> None:
        """Acquire the device; raise with a clear message if that is impossible."""
        ...

    def read(self) -> Image | None:
        """Return the next picture, or ``None`` if there is none right now."""
        ...

    def close(self) -> None:
        """Release the device; idempotent."""
        ...


@runtime_checkable
class Interruptible(Protocol):
    """Optional extra for sources whose blocking ``read()`` can be cut short safely.

    When the grabber gives up on a reader (the watchdog fired, or ``close()``), it calls
    ``interrupt()`` on that reader's source *from another thread*. The method must be thread-safe and
    do nothing but make a pending or future ``read()`` return ``None`` soon, without consuming input;
    the reader then notices it was retired and closes the source itself. It is terminal: an
    interrupted source reads nothing more.

    The memory feed needs this (otherwise a retiring reader could steal a frame meant for its
    successor) and the image folder uses it to cut its pacing sleep short. OpenCV captures do not
    offer it: releasing a ``VideoCapture`` under a thread blocked in ``read()`` is not safe.
    """

    def interrupt(self) -> None:
        """Make ``read()`` return ``None`` promptly from now on; callable from any thread."""
        ...


# eq=False: comparing two frames field by field would compare numpy arrays, which raises.
@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One picture as delivered to the gate, stamped by the grabber that captured it.

    ``seq`` starts at 1 and increases by one for every frame the grabber captured, across reopens of
    the camera, so a consumer can ask for "anything newer than what I last saw" (``after_seq=0`` means
    any frame) and can tell how many it skipped.
    ``captured_at`` is the grabber's monotonic clock (seconds) at the moment ``read()`` returned; it is
    only comparable with that same clock, never with wall time. The same ``image`` array is handed to
    every consumer that asks for this frame: treat it as read-only (copy before drawing on it).

        >>> f = Frame(image=np.zeros((2, 2, 3), np.uint8), seq=7, captured_at=100.0, source="demo")
        >>> f.age(now=100.25)
        0.25
    """

    image: Image
    seq: int
    captured_at: float
    source: str

    def age(self, now: float) -> float:
        """Seconds since capture, given ``now`` from the same monotonic clock."""
        return now - self.captured_at


def fit_to_size(image: object, width: int | None, height: int | None) -> Image:
    """Turn whatever OpenCV returned into an :data:`Image` of ``width x height`` (if both are given).

    Sources that cannot negotiate a size with the hardware (files, image folders) use this to honour
    the configured resolution, so the decoder sees the same geometry whatever the source. Without a
    size, or when the size already matches, the picture is returned as is, without a copy.

        >>> fit_to_size(np.zeros((480, 640, 3), np.uint8), 320, 240).shape
        (240, 320, 3)
        >>> fit_to_size(np.zeros((480, 640, 3), np.uint8), None, None).shape
        (480, 640, 3)
    """
    array = np.asarray(image, dtype=np.uint8)
    if width is None or height is None or array.shape[:2] == (height, width):
        return array
    # INTER_AREA is the right filter for shrinking (the usual case: a 1080p clip on a 720p gate); it
    # averages instead of skipping pixels, which would alias the fine modules of a QR code.
    shrinking = width * height < array.shape[0] * array.shape[1]
    import cv2  # OpenCV loads with the first frame that needs resizing, not with the interface

    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(array, (width, height), interpolation=interpolation), dtype=np.uint8)


class Pacer:
    """Spaces calls ``1/fps`` apart on a fixed schedule; ``fps=0`` means no waiting at all.

    The schedule advances from the previous due time, not from "now", so the small oversleep of every
    ``sleep()`` does not add up to a slower rate. If the caller fell behind by more than a period (the
    grabber was busy, the disk was slow), the schedule restarts instead of bursting to catch up, as a
    real camera would simply have dropped those frames.
    """

    def __init__(
        self,
        fps: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if fps < 0:
            raise ValueError("fps must not be negative")
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_due: float | None = None

    def wait(self) -> None:
        """Return when the next frame is due (immediately for the first one)."""
        if self.period == 0.0:
            return
        now = self._clock()
        if self._next_due is None or now - self._next_due > self.period:
            self._next_due = now
        elif now < self._next_due:
            self._sleep(self._next_due - now)
        self._next_due += self.period

    def reset(self) -> None:
        """Forget the schedule; the next ``wait()`` returns at once."""
        self._next_due = None
