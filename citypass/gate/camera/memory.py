"""Frames pushed from inside the process: the camera of the demo and of the benchmarks.

A :class:`MemoryFeed` is a small named queue. A producer thread (the demo's renderer drawing a phone
in front of the gate, a benchmark replaying a corpus) pushes pictures into it; a
:class:`MemorySource` reading the feed is a :class:`~citypass.gate.camera.base.FrameSource` like any camera, so
the gate's whole pipeline (grabber, watchdog, decoder, decision) runs unchanged.

    >>> import numpy as np
    >>> feed = memory_feed("doc-example")
    >>> feed.push(np.zeros((720, 1280, 3), np.uint8))
    True
    >>> src = MemorySource("doc-example")
    >>> src.open(); src.read().shape
    (720, 1280, 3)
    >>> src.read() is None   # nothing pushed: returns None after poll_s, like a camera without a frame
    True
    >>> src.close(); forget_feed("doc-example")

Config form: ``CameraConfig(source="memory:demo")`` reads ``memory_feed("demo")``. Feeds live in a
process-wide registry by name because config can only name things; the registry holds no pictures
beyond each feed's few queued frames.
"""

from __future__ import annotations

import threading
from collections import deque

from citypass.gate.camera.base import Image, SourceError

_registry: dict[str, MemoryFeed] = {}
_registry_lock = threading.Lock()


class MemoryFeed:
    """A bounded, thread-safe queue of pictures, shared by name between a producer and the gate.

    ``maxsize`` is small on purpose: like a camera, the feed is a pipe, not a recorder. When it is full
    ``push()`` drops the *oldest* queued picture (counted in :attr:`dropped`), unless called with
    ``block=True``, which instead waits for room: the way a benchmark makes the gate consume every frame.

    The feed keeps a reference to each pushed array; push a copy if you keep drawing into the buffer.
    """

    def __init__(self, name: str, maxsize: int = 2) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.name = name
        self.maxsize = maxsize
        self._frames: deque[Image] = deque()
        self._cond = threading.Condition()
        self._dropped = 0
        self._pushed = 0

    def push(self, image: Image, *, block: bool = False, timeout: float | None = None) -> bool:
        """Queue one picture; returns False only if ``block`` and no room appeared within ``timeout``."""
        with self._cond:
            if block:
                if not self._cond.wait_for(lambda: len(self._frames) < self.maxsize, timeout):
                    return False
            elif len(self._frames) >= self.maxsize:
                self._frames.popleft()
                self._dropped += 1
            self._frames.append(image)
            self._pushed += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None, cancel: threading.Event | None = None) -> Image | None:
        """Take the oldest queued picture, waiting up to ``timeout`` seconds; ``None`` if none came.

        A set ``cancel`` event makes the call return ``None`` without taking anything (call
        :meth:`wake` after setting it, to end a wait in progress).
        """

        def cancelled() -> bool:
            return cancel is not None and cancel.is_set()

        with self._cond:
            self._cond.wait_for(lambda: cancelled() or bool(self._frames), timeout)
            if cancelled() or not self._frames:
                return None
            image = self._frames.popleft()
            self._cond.notify_all()  # wake a producer blocked on a full feed
            return image

    def wake(self) -> None:
        """Make every waiting :meth:`get` re-check its ``cancel`` event."""
        with self._cond:
            self._cond.notify_all()

    def clear(self) -> None:
        """Throw away whatever is queued (e.g. between two benchmark runs)."""
        with self._cond:
            self._frames.clear()
            self._cond.notify_all()

    @property
    def dropped(self) -> int:
        """Pictures discarded by non-blocking pushes into a full feed."""
        with self._cond:
            return self._dropped

    @property
    def pushed(self) -> int:
        """Pictures accepted by ``push()`` so far."""
        with self._cond:
            return self._pushed

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)

    def __repr__(self) -> str:
        return f"MemoryFeed({self.name!r}, queued={len(self)}, pushed={self.pushed}, dropped={self.dropped})"


def memory_feed(name: str, maxsize: int = 2) -> MemoryFeed:
    """The feed called ``name``, created on first use (``maxsize`` only applies then)."""
    with _registry_lock:
        feed = _registry.get(name)
        if feed is None:
            feed = _registry[name] = MemoryFeed(name, maxsize)
        return feed


def forget_feed(name: str) -> None:
    """Remove ``name`` from the registry; sources already reading it keep their reference."""
    with _registry_lock:
        _registry.pop(name, None)


class MemorySource:
    """Reads a :class:`MemoryFeed` as a frame source.

    ``feed`` is the feed itself or its registry name. ``read()`` waits at most ``poll_s`` for a picture
    and then returns ``None``: a short wait keeps a retired or closing reader responsive, and the
    grabber's watchdog (not this class) decides when an idle feed counts as a dead camera.

    Closing a source does not close the feed: the grabber makes a new source for every reopen, and all
    of them must keep reading the same producer.
    """

    def __init__(self, feed: MemoryFeed | str, *, poll_s: float = 0.1) -> None:
        self.feed = feed if isinstance(feed, MemoryFeed) else memory_feed(feed)
        self.poll_s = poll_s
        self._open = False
        self._interrupted = threading.Event()

    @property
    def describe(self) -> str:
        """E.g. ``"memory:demo"``."""
        return f"memory:{self.feed.name}"

    def open(self) -> None:
        """Start reading; a memory feed is always available."""
        self._open = True

    def read(self) -> Image | None:
        """The next pushed picture, or ``None`` if none arrives within ``poll_s``."""
        if not self._open:
            raise SourceError(f"{self.describe}: read() on a closed source")
        return self.feed.get(timeout=self.poll_s, cancel=self._interrupted)

    def interrupt(self) -> None:
        """Stop reading at once, leaving queued pictures for the next reader (thread-safe, terminal).

        Without this, a reader the grabber has just retired could still be waiting in :meth:`read` and
        take the next pushed picture, which the grabber would then have to throw away.
        """
        self._interrupted.set()
        self.feed.wake()

    def close(self) -> None:
        """Stop reading; the feed and its queued pictures stay for the next reader."""
        self._open = False
