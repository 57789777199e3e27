"""Typed configuration of a gate's camera, and how the ``source`` string is understood.

One string says where frames come from, as in Frigate's camera inputs. The forms are:

=============================  ==========  =====================================================
``source``                     kind        adapter
=============================  ==========  =====================================================
``"0"``, ``"2"``               device      OpenCV / V4L2, by index
``"/dev/video0"``              device      OpenCV / V4L2, by path
``"rtsp://cam.local/stream"``  stream      OpenCV / FFmpeg (any ``scheme://`` URL)
``"/media/lane3.mp4"``         file        OpenCV / FFmpeg
``"dir:/srv/frames"``          images      a folder of pictures played at ``fps``
``"images:/srv/frames"``       images      (same)
``"memory:demo"``              memory      frames pushed from another thread
=============================  ==========  =====================================================

Example::

    >>> cfg = CameraConfig(source="dir:/srv/frames", fps=10, stale_after_s=1.5)
    >>> cfg.kind, cfg.target
    ('images', '/srv/frames')
    >>> CameraConfig(source="/dev/video2").kind
    'device'
    >>> CameraConfig(source="0", colour="red")
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for CameraConfig
    ...

Unknown keys are rejected so that a typo in a technician's config ("stale_afer_s") fails at start-up
instead of silently running with the default.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from citypass.errors import InvalidInput

SourceKind = Literal["device", "file", "stream", "images", "memory"]

# "scheme://" as in RFC 3986. A Windows drive letter ("C:\\") has no "//" and so stays a file.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DEVICE_PATH = re.compile(r"^/dev/video\d+$")


def classify_source(source: str) -> tuple[SourceKind, str]:
    """Split a ``source`` string into its kind and the target the adapter opens.

    >>> classify_source("0")
    ('device', '0')
    >>> classify_source("rtsp://user:pw@10.0.0.5/h264")
    ('stream', 'rtsp://user:pw@10.0.0.5/h264')
    >>> classify_source("images:/tmp/frames")
    ('images', '/tmp/frames')
    """
    text = source.strip()
    if not text:
        raise InvalidInput("camera source is empty")
    for prefix in ("dir:", "images:"):
        if text.startswith(prefix):
            path = text[len(prefix) :]
            if not path:
                raise InvalidInput(f"{source!r}: give a directory after {prefix!r}")
            return "images", path
    if text.startswith("memory:"):
        name = text[len("memory:") :]
        if not name:
            raise InvalidInput(f"{source!r}: give a feed name after 'memory:'")
        return "memory", name
    if text.isdigit() or _DEVICE_PATH.match(text):
        return "device", text
    if _URL.match(text):
        return "stream", text
    return "file", text


class CameraConfig(BaseModel):
    """Where the gate's frames come from and how hard the watchdog watches them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(
        default="0",
        description=(
            "Where frames come from: a V4L2 device index ('0') or path ('/dev/video0'); a video file path; "
            "an RTSP/HTTP stream URL ('rtsp://…'); 'dir:/path' or 'images:/path' for a folder of images "
            "played in name order; 'memory:name' for frames pushed in-process (demo, benchmarks)."
        ),
    )
    width: int | None = Field(
        default=1280,
        gt=0,
        description=(
            "Frame width in pixels. Requested from live cameras (which may refuse); files and image "
            "folders are resized to it. 0 (or None) keeps the source's own size."
        ),
    )
    height: int | None = Field(
        default=720,
        gt=0,
        description="Frame height in pixels; see width. Set both or neither.",
    )
    fps: float = Field(
        default=30.0,
        ge=0,
        description=(
            "Frames per second. Requested from live cameras; the playback rate of files and image "
            "folders (0 = as fast as they can be read, for benchmarks). Memory feeds ignore it."
        ),
    )
    loop: bool = Field(
        default=True,
        description="Start again from the beginning at the end of a video file or image folder.",
    )
    fourcc: str | None = Field(
        default=None,
        min_length=4,
        max_length=4,
        description=(
            "Pixel format to request from a V4L2 camera, e.g. 'MJPG' (many USB cameras only reach "
            "1280x720 at 30 fps in MJPG). None leaves the driver's default."
        ),
    )
    stale_after_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Frame-age watchdog: the camera is out of order when no new frame has arrived, or every "
            "frame has been byte-identical, for this many seconds; it is then closed and reopened."
        ),
    )
    open_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "How long opening the source may take before the first frame is due (RTSP servers can be "
            "slow to answer). Also passed to FFmpeg as its open/read timeout for streams."
        ),
    )
    reopen_backoff_min_s: float = Field(
        default=0.5,
        gt=0,
        description="Wait before the first reopen after a failure; doubles with each further failure.",
    )
    reopen_backoff_max_s: float = Field(
        default=10.0,
        gt=0,
        description="Upper bound of the wait between reopen attempts.",
    )
    max_image_pixels: int = Field(
        default=50_000_000,
        ge=1,
        description=(
            "Image folders: a picture with more pixels than this (width × height, read from its file header) is "
            "refused without being decoded, as is one whose header gives no size. A small file can declare a "
            "huge picture that takes gigabytes to decode."
        ),
    )
    detect_frozen: bool | None = Field(
        default=None,
        description=(
            "Treat byte-identical frames for stale_after_s as a frozen camera. None = on for devices and "
            "streams (a live sensor is never noise-free), off for files, image folders and memory feeds, "
            "which may legitimately repeat a picture."
        ),
    )

    @field_validator("width", "height", mode="before")
    @classmethod
    def _zero_is_unset(cls, value: object) -> object:
        # TOML has no null: 0 is how a config file says "keep the source's own size"
        return None if value == 0 else value

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        classify_source(self.source)  # raises ValueError -> ValidationError with the reason
        if (self.width is None) != (self.height is None):
            raise InvalidInput("set both width and height, or neither")
        if self.reopen_backoff_min_s > self.reopen_backoff_max_s:
            raise InvalidInput("reopen_backoff_min_s must not exceed reopen_backoff_max_s")
        # A watchdog shorter than one frame interval would call every healthy camera stale.
        if self.fps > 0 and self.stale_after_s <= 1.0 / self.fps:
            raise InvalidInput(f"stale_after_s ({self.stale_after_s}) must exceed one frame interval (1/fps)")
        return self

    @property
    def kind(self) -> SourceKind:
        """Which adapter serves ``source``: device, file, stream, images or memory."""
        return classify_source(self.source)[0]

    @property
    def target(self) -> str:
        """What the adapter opens: the index/path/URL, the image folder, or the feed name."""
        return classify_source(self.source)[1]

    @property
    def frozen_check(self) -> bool:
        """``detect_frozen`` with the per-kind default applied."""
        if self.detect_frozen is not None:
            return self.detect_frozen
        return self.kind in ("device", "stream")
