"""OpenCV ``VideoCapture`` as a frame source: V4L2 cameras, video files and RTSP/HTTP streams.

One adapter covers the three because OpenCV already hides their differences behind ``read()``; what
differs is how each is opened and tuned, which is all this file is about:

* **device** (``0``, ``"/dev/video0"``): opened through V4L2 on Linux. Size, rate and optionally the
  pixel format (``fourcc="MJPG"``) are *requested*; the driver has the last word, and the size it chose
  is in :attr:`OpenCVSource.actual`. ``CAP_PROP_BUFFERSIZE=1`` asks the driver to keep one buffer
  instead of four, so a busy moment costs at most one stale frame instead of 130 ms of them.
* **stream** (``"rtsp://…"``, ``"http://…"``): opened through FFmpeg with open/read timeouts, so a
  dead camera makes ``open()``/``read()`` fail after ``open_timeout_s`` instead of hanging for the
  TCP default. FFmpeg ignores the buffer size; the grabber's thread reading flat out is what keeps
  the picture current.
* **file** (``"lane3.mp4"``): played at ``fps`` (0 = as fast as it decodes), resized to
  ``width x height``, rewound at the end when ``loop``.
* **sensor controls** (devices only): a fixed exposure time, gain and focus from the gate config
  (:func:`control_requests`), requested after the size and rate; what they are for is in
  ``docs/gate.md`` ("Camera settings for phone screens").

    >>> import tempfile, cv2, numpy as np
    >>> path = tempfile.mkdtemp() + "/clip.avi"
    >>> writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    >>> for level in (0, 120, 240):
    ...     _ = writer.write(np.full((48, 64, 3), level, np.uint8))
    >>> writer.release()
    >>> src = OpenCVSource(path, fps=0, loop=False, width=None, height=None)
    >>> src.open()
    >>> [round(float(src.read().mean()), -1) for _ in range(3)], src.read()
    ([0.0, 120.0, 240.0], None)
    >>> src.close()

Nothing in here logs or raises a URL's password: :func:`redact_url` is applied to ``describe``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import cv2

from citypass.errors import InvalidInput
from citypass.gate.camera.base import Image, Pacer, SourceError, fit_to_size
from citypass.gate.camera.config import CameraControls, classify_source

log = logging.getLogger(__name__)

CaptureKind = Literal["device", "file", "stream"]
_CAPTURE_KINDS: dict[str, CaptureKind] = {"device": "device", "file": "file", "stream": "stream"}


def redact_url(url: str) -> str:
    """Hide the password and query values of a stream URL, for logs and status pages.

    >>> redact_url("rtsp://admin:hunter2@10.0.0.5:554/h264?token=abc")
    'rtsp://admin:***@10.0.0.5:554/h264?***'
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{netloc.rsplit('@', 1)[1]}"
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


class OpenCVSource:
    """A camera, stream or video file read through ``cv2.VideoCapture``.

    ``target`` is a device index (``0`` or ``"0"``), a ``/dev/videoN`` path, a ``scheme://`` URL or a
    file path; ``kind`` is inferred from it unless given. ``width``/``height``/``fps``/``fourcc`` are
    requested from devices; files are paced to ``fps`` and resized to ``width x height``.
    """

    def __init__(
        self,
        target: int | str,
        *,
        width: int | None = 1280,
        height: int | None = 720,
        fps: float = 30.0,
        loop: bool = True,
        fourcc: str | None = None,
        open_timeout_s: float = 5.0,
        kind: CaptureKind | None = None,
        controls: CameraControls | None = None,
    ) -> None:
        text = str(target)
        if kind is None:
            inferred = classify_source(text)[0]
            kind = _CAPTURE_KINDS.get(inferred)
            if kind is None:
                raise InvalidInput(f"{text!r} is not something OpenCV opens (it is a {inferred!r} source)")
        self.kind: CaptureKind = kind
        self.target = text
        self.width = width
        self.height = height
        self.fps = fps
        self.loop = loop
        self.fourcc = fourcc
        self.open_timeout_s = open_timeout_s
        self.controls = controls or CameraControls()
        #: What the driver actually granted after ``open()``: (width, height, fps).
        self.actual: tuple[int, int, float] | None = None
        self._cap: cv2.VideoCapture | None = None
        self._pacer = Pacer(fps if kind == "file" else 0.0)

    @property
    def describe(self) -> str:
        """E.g. ``"v4l2:/dev/video0 1280x720@30fps"``, ``"stream:rtsp://cam/h264"``, ``"file:a.mp4"``."""
        if self.kind == "device":
            size = f" {self.width}x{self.height}" if self.width and self.height else ""
            return f"v4l2:{self.target}{size}@{self.fps:g}fps"
        if self.kind == "stream":
            return f"stream:{redact_url(self.target)}"
        return f"file:{self.target}"

    def open(self) -> None:
        """Open the capture; raise :class:`SourceError` saying why when that fails."""
        self.close()
        if self.kind == "device":
            cap = self._open_device()
        elif self.kind == "stream":
            timeout_ms = int(self.open_timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
            cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
            if not cap.isOpened():
                cap.release()
                raise SourceError(f"{self.describe}: cannot connect (wrong URL, camera offline or login refused)")
            self._tune(cap, live=True)
        else:
            if not Path(self.target).is_file():
                raise SourceError(f"{self.describe}: no such file")
            cap = cv2.VideoCapture(self.target, cv2.CAP_ANY)
            if not cap.isOpened():
                cap.release()
                raise SourceError(f"{self.describe}: cannot open (not a video, or its codec is missing)")
        self.actual = (
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            float(cap.get(cv2.CAP_PROP_FPS)),
        )
        self._cap = cap
        self._pacer.reset()

    def read(self) -> Image | None:
        """The next frame; ``None`` when the driver had none (or at the end of a non-looping file)."""
        cap = self._cap
        if cap is None:
            raise SourceError(f"{self.describe}: read() before open()")
        self._pacer.wait()
        ok, image = cap.read()
        if not ok and self.kind == "file" and self.loop:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = cap.read()
        if not ok or image is None:
            return None
        if self.kind == "file":
            return fit_to_size(image, self.width, self.height)
        # Live pictures are passed on at whatever size the camera granted: scaling a camera that refused
        # 16:9 would distort the code; the decoder copes with any size, and `actual` tells the truth.
        return fit_to_size(image, None, None)

    def close(self) -> None:
        """Release the capture; idempotent."""
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def _open_device(self) -> cv2.VideoCapture:
        index_or_path: int | str = int(self.target) if self.target.isdigit() else self.target
        node = f"/dev/video{index_or_path}" if isinstance(index_or_path, int) else index_or_path
        if sys.platform.startswith("linux") and not Path(node).exists():
            raise SourceError(f"{self.describe}: no such device {node} (camera unplugged?)")
        # Ask for V4L2 by name on Linux: with CAP_ANY OpenCV also tries FFmpeg/GStreamer on a missing
        # device, which only adds confusing log lines and delay.
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(index_or_path, api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.describe}: cannot open {node} (in use by another process, or not a camera)")
        self._tune(cap, live=True)
        return cap

    def _tune(self, cap: cv2.VideoCapture, *, live: bool) -> None:
        # Order matters with V4L2: the pixel format decides which sizes and rates exist, so it goes first.
        if self.fourcc and self.kind == "device":
            self._request(cap, cv2.CAP_PROP_FOURCC, float(cv2.VideoWriter.fourcc(*self.fourcc)), "fourcc")
        if self.width and self.height and self.kind == "device":
            self._request(cap, cv2.CAP_PROP_FRAME_WIDTH, float(self.width), "width")
            self._request(cap, cv2.CAP_PROP_FRAME_HEIGHT, float(self.height), "height")
        if self.fps > 0 and self.kind == "device":
            self._request(cap, cv2.CAP_PROP_FPS, float(self.fps), "fps")
        if live:
            self._request(cap, cv2.CAP_PROP_BUFFERSIZE, 1.0, "buffer size")
        if self.kind == "device":
            for prop, value, what in control_requests(self.controls):
                self._request(cap, prop, value, what)

    def _request(self, cap: cv2.VideoCapture, prop: int, value: float, what: str) -> None:
        # set() returns False when the backend does not support the property (FFmpeg and the buffer
        # size, a fixed-mode camera and its fps): that is information, not an error.
        if not cap.set(prop, value):
            log.debug("%s: backend ignores %s=%s", self.describe, what, value)


#: V4L2's exposure menu as OpenCV's V4L2 backend passes it through: 1 = manual, 3 = aperture priority (auto).
V4L2_EXPOSURE_MANUAL, V4L2_EXPOSURE_AUTO = 1.0, 3.0


def control_requests(controls: CameraControls) -> list[tuple[int, float, str]]:
    """The OpenCV properties (property, value, name) that set *controls* on a V4L2 camera, in order.

    Order matters: V4L2 ignores an exposure time while auto exposure is on, and a focus position while
    autofocus is on, so the mode goes first.  ``CAP_PROP_EXPOSURE`` is V4L2's ``exposure_time_absolute``,
    in units of 100 µs.

    >>> from citypass.gate.camera.config import CameraControls
    >>> [(name, value) for _, value, name in control_requests(CameraControls(exposure_ms=6, gain=20, focus=150))]
    [('auto exposure', 1.0), ('exposure', 60.0), ('gain', 20.0), ('autofocus', 0.0), ('focus', 150.0)]
    >>> control_requests(CameraControls())
    []
    """
    out: list[tuple[int, float, str]] = []
    if controls.exposure_ms is not None:
        out += [(cv2.CAP_PROP_AUTO_EXPOSURE, V4L2_EXPOSURE_MANUAL, "auto exposure"),
                (cv2.CAP_PROP_EXPOSURE, float(round(controls.exposure_ms * 10, 1)), "exposure")]
    if controls.gain is not None:
        out.append((cv2.CAP_PROP_GAIN, float(controls.gain), "gain"))
    autofocus = controls.autofocus if controls.focus is None else False
    if autofocus is not None:
        out.append((cv2.CAP_PROP_AUTOFOCUS, 1.0 if autofocus else 0.0, "autofocus"))
    if controls.focus is not None:
        out.append((cv2.CAP_PROP_FOCUS, float(controls.focus), "focus"))
    return out
