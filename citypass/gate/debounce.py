"""One wave of a phone is one presentation.

A visitor holds the phone in front of the camera for a second or two: the decoder reads the same code
on dozens of frames. :class:`PresentationTracker` turns that stream of reads into *presentations*: a key
is reported once when it enters the view, then ignored while it stays in view and until it has been out
of view for ``leave_after_s``. Only then can the same code be presented (and decided) again, so a
single-use ticket is never consumed twice by one wave of the phone.

The key is chosen by the caller. The daemon keys by credential id, so a holder-bound phone that
refreshes its dynamic code while still held up is still the same presentation.

Pure: time is an argument.

    >>> t = PresentationTracker(leave_after_s=1.0)
    >>> t.update(["A"], now=0.0)
    ['A']
    >>> t.update(["A"], now=0.5)   # still in view
    []
    >>> t.update([], now=1.0)
    []
    >>> t.update(["A"], now=1.4)   # back before it was gone for 1 s: same presentation
    []
    >>> t.update([], now=3.0)
    []
    >>> t.update(["A"], now=3.1)   # gone for 1.7 s: a new presentation
    ['A']
"""

from __future__ import annotations

from collections.abc import Iterable


class PresentationTracker:
    """Reports each key once per continuous stay in view (with a ``leave_after_s`` gap tolerance)."""

    def __init__(self, leave_after_s: float = 1.5, max_keys: int = 256) -> None:
        if leave_after_s < 0:
            raise ValueError("leave_after_s must be >= 0")
        self.leave_after_s = leave_after_s
        self.max_keys = max_keys
        self._last_seen: dict[str, float] = {}

    def update(self, keys: Iterable[str], now: float) -> list[str]:
        """Feed the keys read on one frame at monotonic time ``now``; return the new presentations."""
        self._expire(now)
        new: list[str] = []
        for key in keys:
            if key not in self._last_seen and key not in new:
                new.append(key)
            self._last_seen[key] = now
        if len(self._last_seen) > self.max_keys:  # a flood of distinct codes must not grow memory
            for key in sorted(self._last_seen, key=self._last_seen.__getitem__)[: len(self._last_seen) - self.max_keys]:
                del self._last_seen[key]
        return new

    def _expire(self, now: float) -> None:
        gone = [k for k, seen in self._last_seen.items() if now - seen >= self.leave_after_s]
        for k in gone:
            del self._last_seen[k]
