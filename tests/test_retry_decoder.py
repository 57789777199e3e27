"""The gate's default decoder, ``retry``: zxing-cpp first, a bounded second look where a code is likely.

Real QR images through real decoders: frames from segno and ``bench.frames``, decoded by zxing-cpp.  The
tests hold the three promises of the second look: it reads frames the first pass cannot; on a frame with
code-like structure but no code its work stays within the stated bound (counted, not timed); and it never
reads a code that is not there.
"""

from __future__ import annotations

import functools
import math
import statistics
import time

import cv2
import numpy as np
import pytest
import segno
import zxingcpp

from citypass.bench.frame_effects import Bands
from citypass.bench.frames import qr_matrix, random_payload, synth_frame
from citypass.gate.decoders import Decoded, make_decoder
from citypass.gate.decoders.regions import Region, texture_regions
from citypass.gate.decoders.restore import line_kernel
from citypass.gate.decoders.retry import DEBLUR_TRIES, MAX_CROP_PX, MAX_REGIONS, RetryDecoder, work_bound
from citypass.gate.decoders.stack import STATIC_EVERY
from citypass.gate.decoders.zxing import ZxingDecoder

SECOND_LOOK = {"rectify", "upscale", "rescale", "deblur", "flatten", "finder", "stack", "global"}


def texts(found: list[Decoded]) -> set[str]:
    return {d.text for d in found}


@functools.cache
def payload(i: int) -> str:
    return random_payload(np.random.default_rng([17, i]), "static" if i % 2 == 0 else "dynamic")


@functools.cache
def frame(condition: str, i: int, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    return synth_frame(payload(i) if condition != "no_code" else None, condition, size,
                       np.random.default_rng([23, size[0], len(condition), i]))


def code_image(text: str, scale: int) -> np.ndarray:
    """A perfect grey QR image (light background) with its quiet zone, *scale* px per module."""
    dark = qr_matrix(text).astype(np.uint8)
    return np.pad(np.kron(1 - dark, np.ones((scale, scale), np.uint8)) * 255, 4 * scale, constant_values=255)


def on_background(img: np.ndarray, at: tuple[int, int] = (100, 150), size: tuple[int, int] = (640, 480)) -> np.ndarray:
    out = np.full((size[1], size[0]), 120, np.uint8)
    y, x = at
    out[y:y + img.shape[0], x:x + img.shape[1]] = img
    return out


# --- it reads what the first pass cannot ------------------------------------------------------------------


@pytest.mark.parametrize("condition", ["far", "shake"])
def test_retry_reads_every_frame_zxing_reads_and_more(condition: str) -> None:
    zxing, retry = ZxingDecoder(), RetryDecoder(stack=False)
    first, second, steps = set(), set(), set()
    for i in range(10):
        img = frame(condition, i, (640, 480))
        if payload(i) in texts(zxing.decode(img)):
            first.add(i)
        if payload(i) in texts(retry.decode(img)):
            second.add(i)
            steps.add(retry.work.read_by)
    assert first <= second, f"the first pass is zxing-cpp's: it must keep every read ({first - second} lost)"
    assert second - first, f"the second look read no {condition} frame that zxing-cpp missed"
    assert steps & SECOND_LOOK


def test_a_far_code_is_read_by_the_second_look_where_it_was_located() -> None:
    code = cv2.GaussianBlur(code_image("CP1:" + "FAR" * 50, 8), (0, 0), 3)
    small = cv2.resize(code, None, fx=0.19, fy=0.19, interpolation=cv2.INTER_AREA)  # 1.5 px per module
    img = on_background(small, at=(200, 300))
    assert ZxingDecoder().decode(img) == []
    decoder = RetryDecoder()
    (found,) = decoder.decode(img)
    assert found.text == "CP1:" + "FAR" * 50 and found.decoder.startswith("retry:")
    assert decoder.work.read_by in SECOND_LOOK and 1 <= decoder.work.regions <= MAX_REGIONS
    assert found.corners is not None
    xs, ys = zip(*found.corners, strict=True)  # corners in frame pixels, on the code
    assert min(xs) >= 290 and max(xs) <= 310 + small.shape[1] and min(ys) >= 190 and max(ys) <= 210 + small.shape[0]


def test_a_smeared_code_is_deblurred() -> None:
    text = "CP1:" + "SHAKE" * 30
    sharp = on_background(code_image(text, 6), at=(60, 120))
    smeared = np.asarray(cv2.filter2D(sharp, -1, line_kernel(14.0, 0.7)), np.uint8)  # 2.3 modules long
    assert ZxingDecoder().decode(smeared) == []
    decoder = RetryDecoder()
    assert texts(decoder.decode(smeared)) == {text}
    assert decoder.work.read_by == "deblur" and decoder.work.wiener >= 1


def test_noisy_frames_are_read_from_their_average_across_frames() -> None:
    # A dim code in heavy sensor noise: no single frame is readable, the mean of a few is.
    text = "CP1:" + "STACK" * 30
    base = on_background(code_image(text, 4).astype(np.float32) * 60 / 255 + 80).astype(np.float32)
    rng = np.random.default_rng(0)
    frames = [np.clip(base + rng.normal(0, 35, base.shape), 0, 255).astype(np.uint8) for _ in range(8)]
    zxing, single, stacked = ZxingDecoder(), RetryDecoder(stack=False), RetryDecoder()
    assert not any(zxing.decode(f) for f in frames)
    assert not any(single.decode(f) for f in frames)
    steps = []
    for f in frames:
        if texts(stacked.decode(f)) == {text}:
            steps.append(stacked.work.read_by)
    assert steps and set(steps) == {"stack"}


# --- structure without a code: bounded work ------------------------------------------------------------------


def _lookalikes() -> dict[str, np.ndarray]:
    """Frames with 2-D code-like structure and no QR code in them."""
    rng = np.random.default_rng(5)
    out: dict[str, np.ndarray] = {}
    for name, fmt in (("datamatrix", zxingcpp.BarcodeFormat.DataMatrix), ("aztec", zxingcpp.BarcodeFormat.Aztec)):
        img = np.asarray(zxingcpp.create_barcode("CITYPASS-" + "A" * 30, fmt).to_image(scale=6), np.uint8)
        out[name] = on_background(np.pad(img, 24, constant_values=255))
    qr = code_image("CP1:" + "NOFINDER" * 20, 5)
    for y, x in ((20, 20), (20, qr.shape[1] - 55), (qr.shape[0] - 55, 20)):
        qr[y:y + 35, x:x + 35] = 255  # the three finder patterns painted out: a grid zxing-cpp cannot locate
    out["qr_without_finders"] = on_background(qr)
    checker = np.kron(rng.integers(0, 2, (50, 50)), np.ones((5, 5))).astype(np.uint8) * 220 + 20
    out["random_modules"] = on_background(checker)
    return out


@pytest.mark.parametrize("name", ["datamatrix", "aztec", "qr_without_finders", "random_modules"])
def test_a_frame_with_structure_but_no_code_costs_at_most_the_stated_bound(name: str) -> None:
    img = _lookalikes()[name]
    assert texture_regions(img), "control: the frame must look like a code, or the bound is not exercised"
    decoder = RetryDecoder()
    assert decoder.decode(img) == []
    work = decoder.work
    calls, pixels = work_bound(work.frame_px)
    assert 1 <= work.regions <= MAX_REGIONS
    assert work.attempts <= calls and work.retry_px <= pixels
    assert work.wiener <= len(DEBLUR_TRIES) * MAX_REGIONS
    assert 0.5 * work.frame_px > MAX_CROP_PX  # each attempt scans a crop, not the frame


def test_a_static_lookalike_is_looked_at_again_only_now_and_then() -> None:
    img = _lookalikes()["random_modules"]
    decoder = RetryDecoder()
    looked = []
    for _ in range(32):
        assert decoder.decode(img) == []
        looked.append(decoder.work.regions)
    # A few looks while the place is new, then one every STATIC_EVERY frames.
    assert sum(looked[-16:]) <= 16 // STATIC_EVERY + 1, looked
    assert sum(looked[:4]) >= 3


def test_frames_without_a_code_get_no_second_look_and_cost_about_the_first_pass() -> None:
    zxing, retry = make_decoder("zxing"), RetryDecoder()
    ratios = []
    for i in range(6):
        img = frame("no_code", i)
        assert retry.decode(img) == [] and retry.work.attempts == 0, retry.work
        # Generous on purpose (the benchmark's goal is 1.2x; this machine may be busy): the best of several
        # interleaved runs, so a neighbour's burst of work does not decide it.
        t_zxing, t_retry = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            zxing.decode(img)
            t_zxing.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            retry.decode(img)
            t_retry.append(time.perf_counter() - t0)
        ratios.append(min(t_retry) / min(t_zxing))
    assert statistics.median(ratios) < 1.6, ratios


# --- no false reads ------------------------------------------------------------------------------------------------


def test_no_false_read_on_noise_even_where_the_second_look_runs() -> None:
    rng = np.random.default_rng(11)
    looked = 0
    for i in range(12):
        size = (640, 480) if i % 2 else (1280, 720)
        if i % 3 == 0:
            img = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
        else:  # a patch of noise on a calm scene: it looks like a code to the texture search
            img = np.full((size[1], size[0]), 128, np.uint8)
            side = int(rng.integers(120, 300))
            y, x = int(rng.integers(0, size[1] - side)), int(rng.integers(0, size[0] - side))
            patch = rng.integers(0, 2, (side // 4 + 1, side // 4 + 1)) * 200 + 20
            img[y:y + side, x:x + side] = np.kron(patch, np.ones((4, 4)))[:side, :side]
            img = np.asarray(cv2.GaussianBlur(img, (0, 0), 0.8 + 0.1 * i), np.uint8)
        decoder = RetryDecoder()
        for _ in range(3):  # and across frames, where the stack averages them
            assert decoder.decode(img) == []
            looked += decoder.work.regions
    assert looked > 0, "control: the second look must have run on some of these frames"


def test_bands_and_texture_regions_on_the_benchmark_frames() -> None:
    # The texture search finds a shaken code (zxing-cpp found no finder patterns in it) and ignores a phone
    # showing a 1-D barcode (edges in one direction only).
    regions = [texture_regions(cv2.cvtColor(frame("shake", i), cv2.COLOR_BGR2GRAY)) for i in range(4)]
    assert all(regions)
    barcode = np.asarray(zxingcpp.create_barcode("CITYPASS-12345678", zxingcpp.BarcodeFormat.Code128)
                         .to_image(scale=2), np.uint8)
    assert texture_regions(on_background(np.pad(barcode, 20, constant_values=255))) == []
    mask = np.full((480, 640), 255, np.uint8)
    banded = Bands(40.0, 0.5, 0.5).apply(np.full((480, 640, 3), 200, np.uint8), mask, 0.0)
    assert banded[:, :, 0].min() < 120 < banded[:, :, 0].max()


def test_region_geometry() -> None:
    a, b = Region(0, 0, 10, 10, "texture"), Region(5, 5, 10, 10, "zxing")
    assert a.overlaps(b) and math.isclose(a.iou(b), 25 / 175)
    joined = a.union(b)
    assert (joined.x, joined.y, joined.w, joined.h, joined.source) == (0, 0, 15, 15, "zxing")


def test_segno_codes_with_quiet_zone_read_through_retry_at_every_scale() -> None:
    text = "CP1:" + "SCALE" * 20
    qr = segno.make(text, error="m", micro=False)
    decoder = RetryDecoder()
    for scale in (2, 3, 5, 8):
        img = on_background(np.asarray(code_image(text, scale), np.uint8), at=(40, 40), size=(800, 700))
        assert texts(decoder.decode(img)) == {text}, (scale, qr.version)


@pytest.mark.parametrize("corner", ["top_left", "top_right", "bottom_left"])
def test_a_finder_under_a_thumb_is_drawn_back_in(corner: str) -> None:
    text = "CP1:" + "THUMB" * 30
    scale, quiet = 5, 20
    code = code_image(text, scale)
    n = (code.shape[0] - 2 * quiet) // scale  # modules across the symbol
    y = quiet if corner != "bottom_left" else quiet + (n - 7) * scale
    x = quiet if corner != "top_right" else quiet + (n - 7) * scale
    code[y:y + 7 * scale, x:x + 7 * scale] = 150  # a grey thumb tip over one finder pattern
    img = on_background(code, at=(40, 60))
    assert ZxingDecoder().decode(img) == []
    decoder = RetryDecoder()
    assert texts(decoder.decode(img)) == {text}
    assert decoder.work.read_by == "finder"
