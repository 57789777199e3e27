"""The gate's camera: frame sources, latest-frame-wins capture, and a watchdog on frame age.

The pieces, one per file:

``base.py``      the :class:`FrameSource` protocol every adapter implements, and :class:`Frame`
``config.py``    :class:`CameraConfig`, the typed config (what ``source`` strings mean)
``opencv.py``    :class:`OpenCVSource`: V4L2 cameras, video files, RTSP/HTTP streams
``images.py``    :class:`ImageDirSource`: a folder of pictures played at a set rate
``memory.py``    :class:`MemorySource` / :class:`MemoryFeed`: frames pushed by another thread
``watchdog.py``  :class:`CameraStatus` and the clock-driven parts of the frame-age watchdog
``grabber.py``   :class:`FrameGrabber`: the threads that keep the newest frame and reopen dead cameras

Most code needs only :func:`open_camera`::

    from citypass.gate.camera import CameraConfig, open_camera

    with open_camera(CameraConfig(source="/dev/video0", fps=30, stale_after_s=2.0)) as camera:
        seq = 0
        while True:
            frame = camera.wait_for_frame(after_seq=seq, timeout=0.5)
            if frame is None:                      # nothing new for half a second
                show_out_of_order(camera.status())  # state, last_error, restarts, ...
                continue
            seq = frame.seq
            handle(frame.image)

A source that cannot be opened (unplugged camera, typo in a path, RTSP server down) never raises here:
the status says ``out_of_order`` with the reason in ``last_error``, and the grabber keeps retrying with
backoff until it works.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from citypass.gate.camera.config import CameraConfig, SourceKind, classify_source
from citypass.lazy import lazy_exports

# The adapters and the grabber load numpy and OpenCV: they are imported when a camera is opened (or one of
# their names is used), so a program that only reads the gate's config — a firmware hook — never loads them.
if TYPE_CHECKING:
    from citypass.gate.camera.base import Frame, FrameSource, Image, Interruptible, SourceError
    from citypass.gate.camera.grabber import FrameGrabber
    from citypass.gate.camera.images import ImageDirSource
    from citypass.gate.camera.memory import MemoryFeed, MemorySource, forget_feed, memory_feed
    from citypass.gate.camera.opencv import OpenCVSource
    from citypass.gate.camera.watchdog import CameraState, CameraStatus
else:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "base": ["Frame", "FrameSource", "Image", "Interruptible", "SourceError"],
        "grabber": ["FrameGrabber"],
        "images": ["ImageDirSource"],
        "memory": ["MemoryFeed", "MemorySource", "forget_feed", "memory_feed"],
        "opencv": ["OpenCVSource"],
        "watchdog": ["CameraState", "CameraStatus"],
    })

__all__ = [
    "CameraConfig",
    "CameraState",
    "CameraStatus",
    "Frame",
    "FrameGrabber",
    "FrameSource",
    "Image",
    "ImageDirSource",
    "Interruptible",
    "MemoryFeed",
    "MemorySource",
    "OpenCVSource",
    "SourceError",
    "SourceKind",
    "classify_source",
    "forget_feed",
    "memory_feed",
    "open_camera",
    "open_source",
]


def open_source(spec: CameraConfig) -> FrameSource:
    """Build the adapter that ``spec.source`` names. The result is *not yet opened*.

    Opening is left to the caller (normally a :class:`FrameGrabber` reader thread) because it can
    block, e.g. on an RTSP server, and the grabber's watchdog must be able to see that happen.

        >>> src = open_source(CameraConfig(source="dir:/srv/frames", fps=5))
        >>> type(src).__name__, src.describe
        ('ImageDirSource', 'images:/srv/frames@5fps')
        >>> open_source(CameraConfig(source="rtsp://op:secret@10.1.2.3/live")).describe
        'stream:rtsp://op:***@10.1.2.3/live'
    """
    kind, target = spec.kind, spec.target
    if kind == "images":
        from citypass.gate.camera.images import ImageDirSource

        return ImageDirSource(target, fps=spec.fps, loop=spec.loop, width=spec.width, height=spec.height,
                              max_pixels=spec.max_image_pixels)
    if kind == "memory":
        from citypass.gate.camera.memory import MemorySource

        return MemorySource(target)
    from citypass.gate.camera.opencv import OpenCVSource  # OpenCV loads with the first camera it opens

    return OpenCVSource(
        target,
        kind=kind,
        width=spec.width,
        height=spec.height,
        fps=spec.fps,
        loop=spec.loop,
        fourcc=spec.fourcc,
        open_timeout_s=spec.open_timeout_s,
    )


def open_camera(
    spec: CameraConfig, *, clock: Callable[[], float] = time.monotonic, name: str = "camera"
) -> FrameGrabber:
    """Start a :class:`FrameGrabber` on the source ``spec`` describes, with its watchdog settings.

    Returns at once, before the first frame; use it as a context manager (or call ``close()``) to stop
    its threads. Each reopen gets a fresh adapter from :func:`open_source`.

        >>> camera = open_camera(CameraConfig(source="/no/such/clip.mp4", reopen_backoff_min_s=0.05))
        >>> _ = camera.wait_for_frame(timeout=0.2)
        >>> status = camera.status()
        >>> status.state, status.last_error
        ('out_of_order', 'file:/no/such/clip.mp4: no such file')
        >>> camera.close()
    """
    from citypass.gate.camera.grabber import FrameGrabber

    return FrameGrabber(
        lambda: open_source(spec),
        stale_after_s=spec.stale_after_s,
        # The first frame may take the open timeout *plus* a frame interval; stale_after_s covers the latter.
        open_timeout_s=spec.open_timeout_s + spec.stale_after_s,
        backoff_min_s=spec.reopen_backoff_min_s,
        backoff_max_s=spec.reopen_backoff_max_s,
        detect_frozen=spec.frozen_check,
        clock=clock,
        name=name,
    ).start()
