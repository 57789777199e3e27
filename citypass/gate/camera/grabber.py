"""Latest-frame-wins capture with a frame-age watchdog that reopens a dead camera.

A gate's decoder is sometimes slower than the camera (a hard code under glare takes longer), and a
queue between them would then fill with old pictures: the visitor has already lowered the phone while
the gate is still decoding what the camera saw a second ago. So the :class:`FrameGrabber` keeps *one*
slot, always overwritten by the newest frame; whatever arrives while the consumer is busy is dropped
and counted.

Cameras also die quietly (see :mod:`citypass.gate.camera.watchdog`). The grabber therefore runs two threads:

* a **reader** that owns one source object and loops ``open(); read(); read(); ...; close()``;
* a **supervisor** that wakes a few times per ``stale_after_s`` and asks "when did a *new* frame last
  arrive?". It never touches the source, so it keeps ticking while the reader is stuck inside a driver
  call. ``status()`` runs the same check, so a consumer sees the truth even between ticks.

When the answer is "too long ago" (or "every frame for that long was identical", a frozen camera), the
supervisor retires the reader, marks the camera ``out_of_order``, and after an exponential backoff
starts a new reader on a *fresh* source object from the factory. Nothing ever waits for the old
reader: if it is blocked in ``read()`` forever it is abandoned (it is a daemon thread), and if it
returns one day it notices it was retired, discards its frame and closes its own source. Sources that
can cut a blocking read short safely (see :class:`~citypass.gate.camera.base.Interruptible`) are told to, so
their readers exit at once instead of lingering.

    >>> import numpy as np
    >>> class Counter:
    ...     describe = "counter"
    ...     def open(self): self.n = 0
    ...     def read(self):
    ...         self.n += 1
    ...         return np.full((4, 4), self.n % 256, np.uint8)
    ...     def close(self): pass
    >>> with FrameGrabber(Counter, stale_after_s=1.0) as grabber:
    ...     frame = grabber.wait_for_frame(timeout=2.0)
    ...     newer = grabber.wait_for_frame(after_seq=frame.seq, timeout=2.0)
    ...     newer.seq > frame.seq, grabber.status().state
    (True, 'ok')
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from citypass.gate.camera.base import Frame, FrameSource, Image, Interruptible, SourceError
from citypass.gate.camera.watchdog import Backoff, CameraState, CameraStatus, FpsWindow, frame_fingerprint

log = logging.getLogger(__name__)

# How long a reader waits after read() returned None before asking again: short enough not to add
# latency when a USB camera drops a single frame, long enough not to spin at the end of a file.
_IDLE_S = 0.01


class FrameGrabber:
    """Runs a frame source in the background, keeps only its newest frame, and keeps it alive.

    ``factory`` makes a new, unopened :class:`~citypass.gate.camera.base.FrameSource` each time it is called;
    the grabber calls it once at start and again for every reopen. (For a config, use
    :func:`citypass.gate.camera.open_camera`, which builds the factory.)

    ``stale_after_s``
        No new frame (or only identical ones, if ``detect_frozen``) for this long means out of order.
    ``open_timeout_s``
        How long a (re)opened source may take to deliver its first frame; defaults to ``stale_after_s``.
    ``backoff_min_s``, ``backoff_max_s``
        Wait between reopen attempts, doubling per consecutive failure, reset by a good frame.
    ``max_stuck_readers``
        How many abandoned readers may still be blocked in the driver before the grabber stops
        reopening (each holds a thread and a device handle); see :meth:`_start_reader_locked`.
    ``clock``
        Monotonic seconds; inject a fake to test the watchdog without sleeping (then call :meth:`check`).
    """

    def __init__(
        self,
        factory: Callable[[], FrameSource],
        *,
        stale_after_s: float = 2.0,
        open_timeout_s: float | None = None,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 10.0,
        detect_frozen: bool = True,
        fps_window_s: float = 2.0,
        max_stuck_readers: int = 4,
        clock: Callable[[], float] = time.monotonic,
        name: str = "camera",
    ) -> None:
        if stale_after_s <= 0:
            raise ValueError("stale_after_s must be positive")
        self._factory = factory
        self._stale_after_s = stale_after_s
        self._open_timeout_s = stale_after_s if open_timeout_s is None else open_timeout_s
        self._backoff = Backoff(backoff_min_s, backoff_max_s)
        self._detect_frozen = detect_frozen
        self._max_stuck = max_stuck_readers
        self._clock = clock
        self._name = name
        # A few checks per stale period: detection lands within ~stale_after_s * 1.2 of the last frame.
        self._tick_s = min(max(stale_after_s / 5, 0.01), 0.25)

        # Everything below is guarded by _cond, which is also what consumers wait on.
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._state: CameraState = "starting"
        self._supervisor: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._source: FrameSource | None = None  # the current reader's source, only to interrupt it
        self._abandoned: list[threading.Thread] = []
        self._gen = 0  # id of the current reader; 0 while none is running
        self._attempts = 0
        self._gen_started_at = 0.0
        self._gen_last_frame_at: float | None = None
        self._next_attempt_at: float | None = None
        self._describe = name
        self._frame: Frame | None = None
        self._seq = 0
        self._delivered_seq = 0
        self._dropped = 0
        self._restarts = 0
        self._last_error: str | None = None
        self._last_frame_at: float | None = None
        self._last_fp: int | None = None
        self._last_change_at = 0.0
        self._frozen_fp: int | None = None  # the picture a frozen camera was stuck on
        self._fps = FpsWindow(fps_window_s, clock)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> FrameGrabber:
        """Open the source and start the threads; returns ``self``. Never raises for a bad source."""
        with self._cond:
            if self._state == "stopped":
                raise RuntimeError("a closed FrameGrabber cannot be restarted; make a new one")
            if self._supervisor is not None:
                return self
            self._start_reader_locked(self._clock())
            self._supervisor = threading.Thread(target=self._supervise, name=f"{self._name}-watchdog", daemon=True)
            self._supervisor.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Stop both threads, waiting at most ``timeout`` seconds in total; idempotent.

        Consumers blocked in :meth:`wait_for_frame` wake up with ``None``. A reader stuck in the driver
        is left behind as a daemon thread rather than holding up shutdown.
        """
        with self._cond:
            if self._state == "stopped":
                return
            self._state = "stopped"
            self._stop.set()
            self._gen = 0
            reader, self._reader = self._reader, None
            self._interrupt_locked()
            supervisor = self._supervisor
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in (supervisor, reader):
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        if reader is not None and reader.is_alive():
            log.warning("%s: reader still blocked in the camera driver after %.1f s; abandoned", self._name, timeout)

    def __enter__(self) -> FrameGrabber:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- consumer side ------------------------------------------------------------------------------

    def latest(self, after_seq: int = 0) -> Frame | None:
        """The newest frame if its ``seq`` is greater than ``after_seq``, else ``None``; never blocks."""
        with self._cond:
            return self._take_locked(after_seq)

    def wait_for_frame(self, after_seq: int = 0, timeout: float | None = None) -> Frame | None:
        """Block until a frame newer than ``after_seq`` exists and return the newest one.

        Returns ``None`` on timeout (real seconds) or when the grabber is closed. Pass the ``seq`` of
        the frame you last processed, so that you are never handed the same picture twice::

            seq = 0
            while (frame := grabber.wait_for_frame(seq, timeout=0.5)) is not None:
                seq = frame.seq
                decode(frame.image)
        """
        with self._cond:
            self._cond.wait_for(lambda: self._state == "stopped" or self._newer_locked(after_seq), timeout)
            return self._take_locked(after_seq)

    def status(self) -> CameraStatus:
        """A consistent snapshot of the camera's health (runs the watchdog check first)."""
        self.check()
        with self._cond:
            now = self._clock()
            age = None if self._last_frame_at is None else now - self._last_frame_at
            return CameraStatus(
                state=self._state,
                fps=self._fps.fps(now),
                last_frame_age_s=age,
                restarts=self._restarts,
                dropped=self._dropped,
                last_error=self._last_error,
            )

    @property
    def describe(self) -> str:
        """The current source's description, e.g. ``"v4l2:/dev/video0 1280x720@30"``."""
        with self._cond:
            return self._describe

    def check(self) -> None:
        """Run the watchdog once: retire a stale reader, start a due reopen.

        The supervisor thread calls this a few times per ``stale_after_s``; tests with a fake clock call
        it directly after moving the clock.
        """
        with self._cond:
            if self._state == "stopped":
                return
            now = self._clock()
            if self._gen:
                reason, frozen_fp = self._stale_reason_locked(now)
                if reason is not None:
                    self._fail_locked(reason, now, frozen_fp)
            if not self._gen and self._next_attempt_at is not None and now >= self._next_attempt_at:
                self._start_reader_locked(now)

    # -- watchdog -------------------------------------------------------------------------------------

    def _stale_reason_locked(self, now: float) -> tuple[str | None, int | None]:
        if self._gen_last_frame_at is None:
            waited = now - self._gen_started_at
            if waited > self._open_timeout_s:
                return f"{self._describe}: no frame within {waited:.1f} s of opening", None
            return None, None
        age = now - self._gen_last_frame_at
        if age > self._stale_after_s:
            return f"{self._describe}: no new frame for {age:.1f} s", None
        still = now - self._last_change_at
        if self._detect_frozen and still > self._stale_after_s:
            # A uniform picture is more likely a covered lens or a dark sensor than a wedged driver; say
            # so, since reopening will not fix that and the technician should look at the camera.
            image = self._frame.image if self._frame is not None else None
            blank = image is not None and int(image.min()) == int(image.max())
            what = "identical blank frames (lens covered?)" if blank else "identical frames"
            return f"{self._describe}: frozen, {what} for {still:.1f} s", self._last_fp
        return None, None

    def _fail_locked(self, reason: str, now: float, frozen_fp: int | None = None) -> None:
        if self._state == "stopped":
            return
        if self._reader is not None:
            # We do not join or close the old reader: it may be blocked in read() and never return.
            # It sees that its generation is over the next time it gets control, and then closes its
            # own source (sources are not thread-safe, so nobody else may). Until then it is leaked.
            self._abandoned.append(self._reader)
            self._reader = None
            self._interrupt_locked()
        self._gen = 0
        self._state = "out_of_order"
        self._last_error = reason
        self._frozen_fp = frozen_fp
        delay = self._backoff.next_delay()
        self._next_attempt_at = now + delay
        log.warning("%s out of order: %s; reopening in %.2f s", self._name, reason, delay)
        self._cond.notify_all()

    def _start_reader_locked(self, now: float) -> None:
        # Leak guard: each abandoned reader that is still blocked holds a thread and, usually, a device
        # handle. A driver that blocks every open would otherwise leak one per backoff period for ever;
        # past the limit we stop reopening and say so, and the device's health check / systemd restart
        # (a fresh process) is the cure.
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        if len(self._abandoned) >= self._max_stuck:
            self._last_error = (
                f"{len(self._abandoned)} reader threads are stuck in the camera driver; not reopening "
                "until one returns (restart the gate daemon if this persists)"
            )
            self._next_attempt_at = now + self._backoff.next_delay()
            return
        self._attempts += 1
        if self._attempts > 1:
            self._restarts += 1
        try:
            source = self._factory()
            describe = source.describe
        except Exception as exc:  # a factory error must not kill the watchdog; report and retry
            self._fail_locked(f"cannot create camera source: {exc}", now)
            return
        self._gen = self._attempts
        self._gen_started_at = now
        self._gen_last_frame_at = None
        self._next_attempt_at = None
        self._describe = describe
        self._source = source
        self._reader = threading.Thread(
            target=self._read_loop,
            args=(self._gen, source),
            name=f"{self._name}-reader-{self._gen}",
            daemon=True,
        )
        self._reader.start()

    def _interrupt_locked(self) -> None:
        source, self._source = self._source, None
        if isinstance(source, Interruptible):
            try:
                source.interrupt()
            except Exception:  # an optional courtesy; the reader is retired either way
                log.exception("%s: interrupting %s failed", self._name, source.describe)

    def _supervise(self) -> None:
        while not self._stop.wait(self._tick_s):
            try:
                self.check()
            except Exception:  # the watchdog must outlive any bug below it
                log.exception("%s: watchdog check failed", self._name)

    # -- reader side ----------------------------------------------------------------------------------

    def _read_loop(self, gen: int, source: FrameSource) -> None:
        try:
            source.open()
            while self._is_current(gen):
                image = source.read()
                if image is None:
                    self._stop.wait(_IDLE_S)
                    continue
                self._publish(gen, image)
        except Exception as exc:  # any failure is reported, never raised out of the thread
            message = str(exc) if isinstance(exc, SourceError) else f"{source.describe}: {exc!r}"
            with self._cond:
                if gen == self._gen:
                    self._fail_locked(message, self._clock())
                else:
                    log.debug("%s: retired reader %d failed late: %s", self._name, gen, message)
        finally:
            try:
                source.close()
            except Exception:
                log.exception("%s: closing %s failed", self._name, source.describe)

    def _is_current(self, gen: int) -> bool:
        with self._cond:
            return gen == self._gen

    def _publish(self, gen: int, image: Image) -> None:
        now = self._clock()
        # Hash outside the lock: it is the only per-frame work and consumers should not wait on it.
        fp = frame_fingerprint(image) if self._detect_frozen else None
        with self._cond:
            if gen != self._gen:
                return  # a retired reader's late frame may be arbitrarily old; never show it
            self._seq += 1
            if self._frame is not None and self._frame.seq > self._delivered_seq:
                self._dropped += 1
            self._frame = Frame(image=image, seq=self._seq, captured_at=now, source=self._describe)
            first_of_gen = self._gen_last_frame_at is None
            self._gen_last_frame_at = self._last_frame_at = now
            self._fps.tick(now)
            if fp is not None:
                if first_of_gen or fp != self._last_fp:
                    self._last_change_at = now
                self._last_fp = fp
            # After a freeze, the same old picture from the reopened camera is not a recovery.
            if self._state != "ok" and (fp is None or fp != self._frozen_fp):
                if self._state == "out_of_order":
                    log.info("%s back in order after %d restart(s)", self._name, self._restarts)
                self._state = "ok"
                self._frozen_fp = None
                self._backoff.reset()
            self._cond.notify_all()

    def _newer_locked(self, after_seq: int) -> bool:
        return self._frame is not None and self._frame.seq > after_seq

    def _take_locked(self, after_seq: int) -> Frame | None:
        if self._state == "stopped" or not self._newer_locked(after_seq):
            return None
        assert self._frame is not None
        self._delivered_seq = max(self._delivered_seq, self._frame.seq)
        return self._frame
