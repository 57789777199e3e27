"""A folder of pictures played as a camera: for tests, demos and replaying what a gate once saw.

The files are played in name order (plain string order, so zero-pad numbers: ``frame_0009.png``
before ``frame_0010.png``) at a steady rate, optionally looping. Every read decodes the file again
rather than caching it: a folder can be larger than a gate's memory, and a consumer that scribbles on
its frame cannot corrupt the next loop.

    >>> import tempfile, cv2, numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> for i in range(3):
    ...     _ = cv2.imwrite(f"{folder}/f{i}.png", np.full((48, 64, 3), i * 100, np.uint8))
    >>> src = ImageDirSource(folder, fps=0, loop=True)
    >>> src.open()
    >>> [int(src.read()[0, 0, 0]) for _ in range(5)]
    [0, 100, 200, 0, 100]
    >>> src.close()

Config form: ``CameraConfig(source="dir:/srv/frames", fps=10)`` (or ``"images:/srv/frames"``).

A picture is sized from its file header before it is decoded (:func:`image_problem`, with ``imagesize``): a
60000 × 60000 PNG is a few hundred bytes on disk and gigabytes once decoded — OpenCV refuses it with an error,
and one just under OpenCV's own limit takes gigabytes and seconds. Anything over ``max_pixels``, or in a format
whose size the header does not give, is refused undecoded.

    >>> _ = cv2.imwrite(f"{folder}/big.png", np.zeros((2000, 3000), np.uint8))
    >>> image_problem(f"{folder}/big.png", max_pixels=1_000_000)
    'image too large: 3000 × 2000 = 6,000,000 pixels (at most 1,000,000)'
    >>> image_problem(f"{folder}/f0.png", max_pixels=1_000_000) is None
    True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import cv2
import imagesize

from citypass.gate.camera.base import Image, Pacer, SourceError, fit_to_size

#: Extensions OpenCV's imread decodes in every build we ship (case-insensitive).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp"})
#: Largest picture decoded by default: a 48-megapixel phone photo fits; a decompression bomb does not.
DEFAULT_MAX_PIXELS = 50_000_000


def image_problem(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Why the picture at ``path`` must not be decoded — too many pixels, or a header that gives no size —
    or None. Reads only the header."""
    try:
        width, height = imagesize.get(str(path))
    except OSError:
        raise
    except Exception:  # a crafted header can make the parser fail in many ways: it is then no picture
        return "not an image the gate reads (its header does not parse)"
    if width <= 0 or height <= 0:
        return "not an image the gate reads (its header gives no size)"
    if width * height > max_pixels:
        return f"image too large: {width} × {height} = {width * height:,} pixels (at most {max_pixels:,})"
    return None


def read_picture(path: str | Path, flags: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image | None, str | None]:
    """Decode the picture at ``path`` with OpenCV after :func:`image_problem` passed it: (image, None), or
    (None, why not). A file OpenCV cannot decode is (None, "unreadable image")."""
    problem = image_problem(path, max_pixels)
    if problem is not None:
        return None, problem
    try:
        image = cast("Image | None", cv2.imread(str(path), flags))
    except cv2.error as exc:  # OpenCV's own limits and decoder failures: never past this point
        return None, f"unreadable image ({str(exc).strip().splitlines()[-1][:200]})"
    return (image, None) if image is not None else (None, "unreadable image")


class ImageDirSource:
    """Plays the images in ``directory`` as frames at ``fps``, in name order.

    ``loop``
        Start again at the first image after the last; without it ``read()`` returns ``None`` at the
        end (the grabber's watchdog then reports the source stale and reopens it, i.e. plays it again
        after a pause: fine for a demo, and it exercises the reopen path).
    ``width``, ``height``
        Resize every image to this size (both or neither).
    ``max_pixels``
        Refuse (without decoding it) a picture with more pixels than this, or whose header gives no size.

    A missing or empty directory makes ``open()`` raise :class:`~citypass.gate.camera.base.SourceError`; a file
    that does not decode makes ``read()`` raise one naming the file.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        fps: float = 10.0,
        loop: bool = True,
        width: int | None = None,
        height: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self.max_pixels = max_pixels
        self.fps = fps
        self.loop = loop
        self.width = width
        self.height = height
        self._interrupted = threading.Event()
        # Pacing sleeps on the interrupt event, so a grabber shutting down does not wait out 1/fps.
        self._pacer = Pacer(fps, clock, self._interrupted.wait)
        self._files: list[Path] = []
        self._index = 0

    @property
    def describe(self) -> str:
        """E.g. ``"images:/srv/frames@10fps"``."""
        return f"images:{self.directory}@{self.fps:g}fps"

    @property
    def files(self) -> list[Path]:
        """The images found by the last ``open()``, in play order."""
        return list(self._files)

    def open(self) -> None:
        """List the folder; raise :class:`SourceError` if it is missing or holds no images."""
        if not self.directory.is_dir():
            raise SourceError(f"{self.describe}: no such directory")
        self._files = sorted(
            (p for p in self.directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
            key=lambda p: p.name,
        )
        if not self._files:
            raise SourceError(f"{self.describe}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the directory")
        self._index = 0
        self._pacer.reset()

    def read(self) -> Image | None:
        """The next image, after waiting for its turn; ``None`` at the end when not looping."""
        if not self._files:
            raise SourceError(f"{self.describe}: read() before open()")
        if self._index >= len(self._files):
            if not self.loop:
                return None
            self._index = 0
        path = self._files[self._index]
        self._index += 1
        self._pacer.wait()
        if self._interrupted.is_set():
            return None
        image, problem = read_picture(path, cv2.IMREAD_COLOR, self.max_pixels)
        if image is None:
            raise SourceError(f"{self.describe}: cannot decode image {path.name}: {problem}")
        return fit_to_size(image, self.width, self.height)

    def interrupt(self) -> None:
        """Cut a pacing wait short and stop reading (thread-safe, terminal; see ``Interruptible``)."""
        self._interrupted.set()

    def close(self) -> None:
        """Forget the file list; idempotent."""
        self._files = []
        self._index = 0
