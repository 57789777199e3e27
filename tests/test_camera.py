"""The camera layer with real parts: real image files, a real MJPG video, real threads and clocks.

The only fake is a tiny FrameSource (allowed: it is injected through the grabber's factory, nothing is
patched) whose read() can be told to flow, stall (block forever, like an unplugged USB camera) or
freeze (return the same picture forever, like a wedged driver).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from citypass.gate.camera import (
    CameraConfig,
    FrameGrabber,
    FrameSource,
    ImageDirSource,
    MemoryFeed,
    MemorySource,
    OpenCVSource,
    classify_source,
    open_camera,
    open_source,
)
from citypass.gate.camera.base import Image, SourceError
from citypass.gate.camera.watchdog import Backoff, FpsWindow, frame_fingerprint


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def level(image: Image) -> int:
    return round(float(image.mean()))


# -- a fake camera, injected ----------------------------------------------------------------------------


class FakeCamera:
    """Behaviour shared by every FakeSource the grabber creates; the test flips ``mode``."""

    def __init__(self, period: float = 0.005) -> None:
        self.mode = "flow"  # "flow" | "stall" | "freeze"
        self.period = period
        self.opens = 0
        self.closes = 0
        self.counter = 0
        self.blocked_reads = 0
        # Not uniform: a wedged driver repeats a real picture (a uniform one reads as "lens covered?").
        self.frozen = np.arange(48 * 64 * 3, dtype=np.uint32).reshape(48, 64, 3).astype(np.uint8)
        self.unblock = threading.Event()  # stalled reads wait on this; set only at teardown

    def source(self) -> FakeSource:
        return FakeSource(self)


class FakeSource:
    describe = "fake:camera"

    def __init__(self, camera: FakeCamera) -> None:
        self.camera = camera

    def open(self) -> None:
        self.camera.opens += 1

    def read(self) -> Image | None:
        cam = self.camera
        if cam.mode == "stall":
            cam.blocked_reads += 1
            cam.unblock.wait()  # a driver call that never returns (until the test ends)
            return None
        time.sleep(cam.period)
        if cam.mode == "freeze":
            return cam.frozen
        cam.counter += 1
        return np.full((48, 64, 3), cam.counter % 256, np.uint8)

    def close(self) -> None:
        self.camera.closes += 1


@pytest.fixture
def fake() -> Iterator[FakeCamera]:
    camera = FakeCamera()
    yield camera
    # Let abandoned readers return from their "driver call": each must notice it was retired, close its
    # own source and exit, so that no thread outlives the test.
    camera.unblock.set()
    assert wait_until(lambda: not any(t.name.startswith("camera-") for t in threading.enumerate()), 2.0)
    assert camera.closes == camera.opens


def test_fake_source_is_a_frame_source(fake: FakeCamera) -> None:
    assert isinstance(fake.source(), FrameSource)
    assert isinstance(MemorySource(MemoryFeed("x")), FrameSource)
    assert isinstance(ImageDirSource("/tmp"), FrameSource)
    assert isinstance(OpenCVSource("/tmp/x.mp4"), FrameSource)


# -- image folder ---------------------------------------------------------------------------------------


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    # Written out of order, with a non-image file, to prove sorting by name and filtering.
    for i in (2, 0, 3, 1):
        assert cv2.imwrite(str(tmp_path / f"frame_{i:04d}.png"), np.full((48, 64, 3), i * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_image_dir_plays_in_name_order_at_rate_and_loops(image_dir: Path) -> None:
    src = ImageDirSource(image_dir, fps=25, loop=True)
    src.open()
    start = time.monotonic()
    levels = []
    for _ in range(10):
        image = src.read()
        assert image is not None
        levels.append(level(image))
    elapsed = time.monotonic() - start
    src.close()
    assert levels == [0, 50, 100, 150, 0, 50, 100, 150, 0, 50]
    # the first frame is immediate, then 9 periods of 40 ms = 0.36 s; the upper bound only catches a pacer
    # that sleeps far too long (a loaded CI machine can stretch the sleeps)
    assert 0.30 <= elapsed <= 1.5


def test_image_dir_without_loop_ends(image_dir: Path) -> None:
    src = ImageDirSource(image_dir, fps=0, loop=False, width=32, height=24)
    src.open()
    frames = [src.read() for _ in range(5)]
    assert [f.shape for f in frames[:4] if f is not None] == [(24, 32, 3)] * 4
    assert frames[4] is None


def test_image_dir_through_grabber_measures_fps(image_dir: Path) -> None:
    cfg = CameraConfig(source=f"dir:{image_dir}", fps=40, width=32, height=24, stale_after_s=1.0)
    with open_camera(cfg) as camera:
        frame = camera.wait_for_frame(timeout=1.0)
        assert frame is not None and frame.image.shape == (24, 32, 3)
        assert frame.source == f"images:{image_dir}@40fps"
        time.sleep(0.6)
        status = camera.status()
    assert status.state == "ok"
    assert 25 <= status.fps <= 50


# -- video file -----------------------------------------------------------------------------------------


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 20, (64, 48))
    assert writer.isOpened(), "this OpenCV build cannot write MJPG/AVI"
    for i in range(12):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    return path


def test_video_file_is_read_in_order(video: Path) -> None:
    src = OpenCVSource(str(video), fps=0, loop=False, width=None, height=None)
    assert src.kind == "file"
    src.open()
    images = []
    while (image := src.read()) is not None:
        images.append(image)
    src.close()
    assert len(images) == 12
    assert all(im.shape == (48, 64, 3) for im in images)
    assert [round(level(im) / 20) for im in images] == list(range(12))  # MJPG is lossy: compare coarsely


def test_video_file_loops_and_resizes_through_grabber(video: Path) -> None:
    cfg = CameraConfig(source=str(video), fps=100, width=32, height=24, stale_after_s=1.0)
    assert cfg.kind == "file" and not cfg.frozen_check
    seen: list[int] = []
    with open_camera(cfg) as camera:
        seq = 0
        while len(seen) < 20:  # more than the 12 frames in the file: it must loop
            frame = camera.wait_for_frame(after_seq=seq, timeout=1.0)
            assert frame is not None
            assert frame.image.shape == (24, 32, 3)
            seq = frame.seq
            seen.append(frame.seq)
        assert camera.status().state == "ok"
        assert camera.status().restarts == 0  # looping is a rewind, not a reopen


# -- sources that do not exist --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("/dev/video99", "no such device"),
        ("99", "no such device"),
        ("/nonexistent/clip.mp4", "no such file"),
        ("rtsp://127.0.0.1:1/none", "cannot connect"),
        ("dir:/nonexistent/frames", "no such directory"),
    ],
)
def test_missing_source_is_out_of_order_and_retried(source: str, error: str) -> None:
    cfg = CameraConfig(source=source, open_timeout_s=1.0, reopen_backoff_min_s=0.02, reopen_backoff_max_s=0.05)
    camera = open_camera(cfg)  # must not raise
    try:
        assert wait_until(lambda: camera.status().restarts >= 2, timeout=2.0)
        status = camera.status()
        assert status.state == "out_of_order"
        assert status.last_error is not None and error in status.last_error
        assert status.last_frame_age_s is None and status.fps == 0.0
        assert camera.latest() is None
    finally:
        camera.close()


def test_memory_feed_with_no_frames_goes_out_of_order() -> None:
    cfg = CameraConfig(source="memory:test-silent", stale_after_s=0.2, open_timeout_s=0.1)
    with open_camera(cfg) as camera:
        assert wait_until(lambda: camera.status().state == "out_of_order", timeout=1.0)
        assert "no frame within" in (camera.status().last_error or "")


# -- the watchdog -----------------------------------------------------------------------------------------


def grabber_for(fake: FakeCamera, *, stale_after_s: float = 0.3, detect_frozen: bool = True) -> FrameGrabber:
    return FrameGrabber(
        fake.source,
        stale_after_s=stale_after_s,
        backoff_min_s=0.05,
        backoff_max_s=0.2,
        detect_frozen=detect_frozen,
    )


def test_stalled_read_is_detected_and_reopened(fake: FakeCamera) -> None:
    with grabber_for(fake) as camera:
        assert wait_until(lambda: camera.status().state == "ok", timeout=1.0)
        fake.mode = "stall"  # the current read() now blocks for the rest of the test
        stalled_at = time.monotonic()
        assert wait_until(lambda: camera.status().state == "out_of_order", timeout=1.0)
        detected_after = time.monotonic() - stalled_at
        assert 0.25 <= detected_after <= 0.3 + 0.3  # stale_after_s, plus a watchdog tick and scheduling
        assert "no new frame" in (camera.status().last_error or "")

        # A fresh source is opened although the old reader is still stuck inside read().
        assert wait_until(lambda: fake.blocked_reads >= 2 and camera.status().restarts >= 1, timeout=1.0)
        fake.mode = "flow"
        assert wait_until(lambda: camera.status().state == "ok", timeout=2.0)
        stuck = [t for t in threading.enumerate() if t.name.startswith("camera-reader") and t.is_alive()]
        assert len(stuck) >= 2  # the abandoned, still-blocked readers and the working one
        status = camera.status()
        assert status.restarts >= 2  # the reopen that stalled again, and the one that worked
        assert status.last_frame_age_s is not None and status.last_frame_age_s < 0.5


def test_frozen_frames_are_detected_and_reopened(fake: FakeCamera) -> None:
    with grabber_for(fake) as camera:
        assert wait_until(lambda: camera.status().state == "ok", timeout=1.0)
        fake.mode = "freeze"
        assert wait_until(lambda: camera.status().state == "out_of_order", timeout=1.0)
        assert "frozen, identical frames" in (camera.status().last_error or "")
        assert wait_until(lambda: fake.opens >= 2, timeout=1.0)
        time.sleep(0.1)
        # The reopened camera shows the same old picture: that is not a recovery.
        assert camera.status().state == "out_of_order"
        assert camera.status().last_frame_age_s is not None  # frames do arrive, they are just identical
        fake.mode = "flow"
        assert wait_until(lambda: camera.status().state == "ok", timeout=2.0)
        assert camera.status().restarts >= 1
        assert fake.closes >= 1  # retired readers closed their own sources


def test_frozen_check_can_be_off(fake: FakeCamera) -> None:
    with grabber_for(fake, detect_frozen=False) as camera:
        fake.mode = "freeze"
        time.sleep(0.6)
        assert camera.status().state == "ok"
        assert camera.status().restarts == 0


def test_watchdog_with_a_fake_clock() -> None:
    now = [1000.0]
    feed = MemoryFeed("clocked", maxsize=4)
    camera = FrameGrabber(
        lambda: MemorySource(feed), stale_after_s=2.0, backoff_min_s=0.5, detect_frozen=False, clock=lambda: now[0]
    ).start()
    try:
        feed.push(np.zeros((4, 4), np.uint8))
        frame = camera.wait_for_frame(timeout=1.0)
        assert frame is not None and frame.captured_at == 1000.0
        now[0] += 1.9
        assert camera.status().state == "ok"
        assert camera.status().last_frame_age_s == pytest.approx(1.9)
        now[0] += 0.2
        status = camera.status()  # status() runs the check itself
        assert status.state == "out_of_order" and status.restarts == 0
        assert status.last_error == "memory:clocked: no new frame for 2.1 s"
        now[0] += 0.5  # the backoff has elapsed: the next check reopens
        camera.check()
        assert camera.status().restarts == 1
        feed.push(np.ones((4, 4), np.uint8))
        assert camera.wait_for_frame(after_seq=frame.seq, timeout=1.0) is not None
        assert camera.status().state == "ok"
    finally:
        camera.close()


# -- latest frame wins ------------------------------------------------------------------------------------


def test_latest_frame_wins_deterministically() -> None:
    feed = MemoryFeed("latest", maxsize=8)
    with FrameGrabber(lambda: MemorySource(feed), stale_after_s=1.0, detect_frozen=False) as camera:
        for i in range(1, 6):
            feed.push(np.full((4, 4), i, np.uint8), block=True)
        assert wait_until(lambda: camera.status().dropped == 4, timeout=1.0)
        frame = camera.latest()
        assert frame is not None and frame.seq == 5 and int(frame.image[0, 0]) == 5
        assert camera.latest(after_seq=frame.seq) is None  # never the same picture twice
        assert camera.wait_for_frame(after_seq=frame.seq, timeout=0.05) is None


def test_slow_consumer_always_gets_the_newest_frame(fake: FakeCamera) -> None:
    fake.period = 0.001
    with grabber_for(fake, stale_after_s=1.0) as camera:
        seqs: list[int] = []
        seq = 0
        for _ in range(8):
            frame = camera.wait_for_frame(after_seq=seq, timeout=1.0)
            assert frame is not None
            # A queued frame would be up to one busy period (0.1 s) old; the newest is fresh.
            assert frame.age(time.monotonic()) < 0.08
            seq = frame.seq
            seqs.append(seq)
            time.sleep(0.1)  # the consumer is busy decoding
        dropped = camera.status().dropped
    assert seqs == sorted(set(seqs))
    assert min(b - a for a, b in itertools.pairwise(seqs)) > 1
    assert dropped >= sum(b - a - 1 for a, b in itertools.pairwise(seqs))
    assert dropped > 8 * 10


# -- shutdown --------------------------------------------------------------------------------------------


def test_close_is_prompt_even_with_a_stuck_reader(fake: FakeCamera) -> None:
    fake.mode = "stall"
    camera = grabber_for(fake).start()
    woke: list[object] = []
    waiter = threading.Thread(target=lambda: woke.append(camera.wait_for_frame(timeout=5.0)))
    waiter.start()
    assert wait_until(lambda: fake.opens >= 1, timeout=1.0)
    started = time.monotonic()
    camera.close(timeout=0.5)
    assert time.monotonic() - started < 1.5  # bounded, not the waiter's 5 s (slack for a loaded CI machine)
    waiter.join(1.0)
    assert woke == [None]  # a blocked consumer wakes up with None
    assert camera.status().state == "stopped"
    assert camera.wait_for_frame(timeout=5.0) is None  # returns at once after close
    assert not any(t.name == "camera-watchdog" and t.is_alive() for t in threading.enumerate())
    camera.close()  # idempotent
    with pytest.raises(RuntimeError):
        camera.start()


def test_close_interrupts_a_slow_image_folder(image_dir: Path) -> None:
    cfg = CameraConfig(source=f"images:{image_dir}", fps=0.5, stale_after_s=3.0)  # a frame every 2 s
    camera = open_camera(cfg)
    assert camera.wait_for_frame(timeout=1.0) is not None  # the first one comes at once
    started = time.monotonic()
    camera.close()  # the reader is in its 2 s pacing wait: interrupt() cuts it short
    assert time.monotonic() - started < 1.0  # well under the 2 s pacing wait
    assert not any(t.name.startswith("camera-") and t.is_alive() for t in threading.enumerate())


def test_close_with_flowing_frames_stops_all_threads(fake: FakeCamera) -> None:
    camera = grabber_for(fake, stale_after_s=1.0).start()
    assert camera.wait_for_frame(timeout=1.0) is not None
    started = time.monotonic()
    camera.close()
    assert time.monotonic() - started < 1.0  # prompt (slack for a loaded CI machine)
    assert not any(t.name.startswith("camera-") and t.is_alive() for t in threading.enumerate())
    assert fake.closes == fake.opens == 1


# -- config and parts ------------------------------------------------------------------------------------


def test_config_rejects_unknown_keys_and_describes_every_field() -> None:
    with pytest.raises(ValidationError):
        CameraConfig(source="0", stale_afer_s=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        CameraConfig(width=640, height=None)
    with pytest.raises(ValidationError):
        CameraConfig(reopen_backoff_min_s=5, reopen_backoff_max_s=1)
    with pytest.raises(ValidationError):
        CameraConfig(source="memory:")
    with pytest.raises(ValidationError):
        CameraConfig(fps=0.5, stale_after_s=2.0)  # the watchdog would fire between healthy frames
    for name, field in CameraConfig.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize(
    ("source", "kind", "target", "adapter"),
    [
        ("0", "device", "0", OpenCVSource),
        ("/dev/video2", "device", "/dev/video2", OpenCVSource),
        ("rtsp://u:p@cam/live", "stream", "rtsp://u:p@cam/live", OpenCVSource),
        ("http://cam/mjpg", "stream", "http://cam/mjpg", OpenCVSource),
        ("lane3.mp4", "file", "lane3.mp4", OpenCVSource),
        ("dir:/srv/f", "images", "/srv/f", ImageDirSource),
        ("images:/srv/f", "images", "/srv/f", ImageDirSource),
        ("memory:demo", "memory", "demo", MemorySource),
    ],
)
def test_source_strings_pick_the_adapter(source: str, kind: str, target: str, adapter: type) -> None:
    assert classify_source(source) == (kind, target)
    assert isinstance(open_source(CameraConfig(source=source)), adapter)


def test_stream_description_hides_the_password() -> None:
    src = open_source(CameraConfig(source="rtsp://admin:hunter2@10.0.0.5/h264?token=abc"))
    assert "hunter2" not in src.describe and "abc" not in src.describe


def test_watchdog_parts() -> None:
    image = np.random.default_rng(1).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    assert frame_fingerprint(image) == frame_fingerprint(image.copy())
    noisy = image.copy()
    noisy[::8, ::8] ^= 1
    assert frame_fingerprint(image) != frame_fingerprint(noisy)
    b = Backoff(0.1, 0.3)
    assert [b.next_delay() for _ in range(4)] == [0.1, 0.2, 0.3, 0.3]
    b.reset()
    assert b.next_delay() == 0.1
    t = [0.0]
    w = FpsWindow(1.0, clock=lambda: t[0])
    for i in range(21):
        t[0] = i * 0.05
        w.tick()
    assert w.fps() == pytest.approx(20.0)
    t[0] += 5.0
    assert w.fps() == 0.0  # decays when frames stop


def test_an_image_folder_refuses_a_picture_too_large_to_decode(tmp_path: Path) -> None:
    """A 60000 × 60000 PNG header in a few hundred bytes: refused from its header as a SourceError naming it,
    never handed to OpenCV (which raised its own error from inside the grabber's read)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0,
                                                                                       0, 0, 0))
                                     + chunk(b"IDAT", zlib.compress(b"\0" * 60001)) + chunk(b"IEND", b""))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((100, 100, 3), np.uint8))
    source = ImageDirSource(tmp_path, fps=0, loop=False, max_pixels=5000)
    source.open()
    with pytest.raises(SourceError, match=r"a\.png: image too large: 60000 × 60000"):
        source.read()
    with pytest.raises(SourceError, match=r"b\.png: image too large: 100 × 100 = 10,000 pixels \(at most 5,000\)"):
        source.read()
    source.close()
    assert CameraConfig(source=f"dir:{tmp_path}", max_image_pixels=20_000).max_image_pixels == 20_000
