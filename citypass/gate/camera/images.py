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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from citypass.gate.camera.base import Image, Pacer, SourceError, fit_to_size

#: Extensions OpenCV's imread decodes in every build we ship (case-insensitive).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp"})


class ImageDirSource:
    """Plays the images in ``directory`` as frames at ``fps``, in name order.

    ``loop``
        Start again at the first image after the last; without it ``read()`` returns ``None`` at the
        end (the grabber's watchdog then reports the source stale and reopens it, i.e. plays it again
        after a pause: fine for a demo, and it exercises the reopen path).
    ``width``, ``height``
        Resize every image to this size (both or neither).

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
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
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{self.describe}: cannot decode image {path.name}")
        return fit_to_size(image, self.width, self.height)

    def interrupt(self) -> None:
        """Cut a pacing wait short and stop reading (thread-safe, terminal; see ``Interruptible``)."""
        self._interrupted.set()

    def close(self) -> None:
        """Forget the file list; idempotent."""
        self._files = []
        self._index = 0
