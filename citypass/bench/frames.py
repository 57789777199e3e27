"""Synthetic camera frames of a phone screen showing a City Pass QR code.

The gate camera never sees a clean, axis-aligned QR image: it sees a phone held a few centimetres to
half a metre away, tilted, with the ceiling lights reflected on the glass, moving, and with the
screen's own pixel grid beating against the sensor's. This module fakes that, deterministically and
fast enough (about 10 ms per 640x480 frame and 20 ms per 1280x720 frame on one core, moire frames
two to three times that), so tests and benchmarks can use real QR images decoded by real decoders
without a camera.

How a frame is made (``synth_frame``):

1. The payload is encoded with segno (error level M, no boosting, never Micro QR), exactly as the
   holder app shows it, and drawn on a phone *screen canvas* with an app header, text lines and a
   black bezel.  The canvas is rendered at a higher resolution than the camera sees it.
2. The canvas is placed in 3-D in front of a pinhole camera (focal length = frame width, about
   60 degrees horizontal field of view), rotated (tilt and in-plane turn) and projected into the frame
   with one ``cv2.warpPerspective``, over a blurry background scene.
3. The camera is simulated: optics blur, exposure, and luma noise.

What each condition adds is drawn by :mod:`citypass.bench.frame_effects`.

Conditions (``CONDITIONS``):

- ``clean``: code 38-50 % of the frame height, small tilt, any in-plane turn up to 20 degrees.
- ``perspective``: the phone tilted 30-50 degrees about a horizontal or vertical axis.
- ``glare``: a saturating specular blob over part of the code (ceiling lights on the glass).
- ``blur``: motion blur (the hand is moving) or defocus (phone too close).
- ``moire``: the screen's RGB sub-pixel grid is rendered and sampled by the camera, which aliases into
  colour interference bands, as when you photograph a monitor.
- ``dark_mode``: light modules on a dark background (phones in dark mode invert the code).
- ``small``: code far from the camera, 2.0-2.6 camera pixels per module.
- ``far``: farther still, 1.5-2.5 camera pixels per module (a phone at arm's length from a 720p camera).
- ``shake``: a hand shaking the phone during the exposure: a curved motion blur 0.6-2.2 modules long
  in any direction.
- ``low_light``: a dim scene and screen (15-35 % of the light) with shot and read noise amplified by
  the sensor's gain.
- ``banding``: dark horizontal bands across the screen from its PWM dimming and the camera's rolling
  shutter.
- ``finger``: a thumb and its shadow over one edge of the code.
- ``cracked``: a cracked, smudged screen protector.
- ``no_code``: the same scene with no QR code: a phone showing a Code 128 barcode (which a QR-only
  decoder must ignore), or no phone at all.

Sizes are ``(width, height)`` tuples, frames are BGR ``uint8`` arrays of shape ``(height, width, 3)``.

Example::

    >>> import numpy as np
    >>> from citypass.bench.frames import random_payload, synth_frame
    >>> rng = np.random.default_rng(7)
    >>> text = random_payload(rng, "static")
    >>> text[:4], len(text)
    ('CP1:', 174)
    >>> frame = synth_frame(text, "glare", (1280, 720), rng)
    >>> frame.shape, frame.dtype
    ((720, 1280, 3), dtype('uint8'))
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Final, Literal

import cv2
import numpy as np
import segno
import zxingcpp
from numpy.typing import NDArray

from citypass.bench import frame_effects as fx
from citypass.errors import InvalidInput

Image = NDArray[np.uint8]
Size = tuple[int, int]

CONDITIONS: Final = ("clean", "perspective", "glare", "blur", "moire", "dark_mode", "small",
                     "far", "shake", "low_light", "banding", "finger", "cracked", "no_code")
#: The conditions whose frames contain a QR code.
CODE_CONDITIONS: Final = CONDITIONS[:-1]
#: Base45 (RFC 9285) is exactly the QR alphanumeric alphabet, so City Pass codes use the dense
#: alphanumeric mode (5.5 bits per character).
BASE45_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
PAYLOAD_PREFIX: Final = "CP1:"
PayloadKind = Literal["static", "dynamic"]
PAYLOAD_KINDS: Final[tuple[PayloadKind, ...]] = ("static", "dynamic")
#: Characters after the prefix: a static annual pass (QR version 7-M) and a holder-bound dynamic
#: code (version 11-M).
PAYLOAD_CHARS: Final[dict[PayloadKind, int]] = {"static": 170, "dynamic": 350}

QUIET = 4  # quiet-zone modules required by ISO/IEC 18004


def random_payload(rng: np.random.Generator, kind: PayloadKind = "static") -> str:
    """A random City Pass-like payload: ``"CP1:"`` plus 170 or 350 Base45 characters."""
    idx = rng.integers(0, len(BASE45_ALPHABET), size=PAYLOAD_CHARS[kind])
    return PAYLOAD_PREFIX + "".join(BASE45_ALPHABET[i] for i in idx)


@functools.lru_cache(maxsize=1024)
def qr_matrix(text: str) -> NDArray[np.bool_]:
    """The QR symbol for *text* (ECC M, not boosted, never Micro QR) as a bool matrix, True = dark.

    No quiet zone is included.  ``qr_matrix("CP1:" + "A" * 170).shape == (45, 45)`` (version 7).
    Cached, because segno's mask selection costs ~15 ms and benchmarks reuse each payload.
    """
    qr = segno.make(text, error="m", boost_error=False, micro=False)
    matrix = np.asarray(qr.matrix, dtype=np.uint8) > 0
    matrix.setflags(write=False)  # shared by every caller through the cache
    return matrix


def parse_size(spec: str) -> Size:
    """``"1280x720"`` -> ``(1280, 720)``; ValueError unless both are positive integers."""
    w, _, h = spec.strip().lower().partition("x")
    size = int(w), int(h)
    if min(size) < 1:
        raise InvalidInput(f"frame size must be positive, got {spec!r}")
    return size


def background(rng: np.random.Generator, w: int, h: int) -> Image:
    """A defocused scene: muted colour gradients and a few soft blocks (gate housing, clothes)."""
    grey = rng.integers(50, 190, size=(6, 8, 1)).astype(np.int16)
    tint = rng.integers(-25, 26, size=(6, 8, 3)).astype(np.int16)
    coarse = np.clip(grey + tint, 0, 255).astype(np.uint8)
    small = cv2.resize(coarse, (w // 4, h // 4), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
        x1, y1 = x0 + int(rng.integers(w // 40, w // 12)), y0 + int(rng.integers(h // 40, h // 12))
        color = tuple(int(c) for c in rng.integers(20, 230, size=3))
        cv2.rectangle(small, (x0, y0), (x1, y1), color, -1)
    # Upscaling the quarter-size scene is what defocuses it (the lens focuses on the phone).
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


def screen_canvas(
    symbol: NDArray[np.bool_] | None, k: int, dark: bool, rng: np.random.Generator, with_barcode: bool
) -> tuple[Image, tuple[float, float], int]:
    """Draw the phone (bezel + app screen + code) at *k* canvas pixels per module.

    Returns the BGR canvas, the code centre on it, and the code side with quiet zone, in canvas px.
    """
    n = (symbol.shape[0] if symbol is not None else 45) + 2 * QUIET
    side = n * k
    sw = int(side * rng.uniform(1.15, 1.35))
    sh = int(sw * rng.uniform(1.6, 1.9))  # the part of the phone below the code is mostly out of view
    bezel = max(2, sw // 25)
    paper_v = int(rng.integers(225, 252)) if not dark else int(rng.integers(18, 40))
    ink_v = int(rng.integers(10, 40)) if not dark else int(rng.integers(200, 235))
    canvas = np.full((sh + 2 * bezel, sw + 2 * bezel, 3), 12, dtype=np.uint8)
    canvas[bezel : bezel + sh, bezel : bezel + sw] = paper_v
    # App header band in a brand colour, then grey "text" lines under the code.
    header = tuple(int(c) for c in rng.integers(60, 220, size=3))
    cv2.rectangle(canvas, (bezel, bezel), (bezel + sw, bezel + sh // 8), header, -1)
    cx, cy = bezel + sw / 2, bezel + sh * 0.45
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    line_v = (paper_v + ink_v) // 2
    for i in range(4):
        ly = y0 + side + k * 3 + i * k * 4
        lw = int(sw * rng.uniform(0.3, 0.8))
        cv2.rectangle(canvas, (bezel + sw // 10, ly), (bezel + sw // 10 + lw, ly + k * 2), (line_v,) * 3, -1)
    if symbol is not None:
        big = np.kron(symbol, np.ones((k, k), dtype=bool))
        region = canvas[y0 + QUIET * k : y0 + (n - QUIET) * k, x0 + QUIET * k : x0 + (n - QUIET) * k]
        region[big] = ink_v
    elif with_barcode:
        bar = zxingcpp.create_barcode("CITYPASS-" + str(int(rng.integers(10**7, 10**8))),
                                      zxingcpp.BarcodeFormat.Code128)
        bars = np.asarray(bar.to_image(scale=max(1, k // 2)), dtype=np.uint8)
        if bars.shape[1] > sw:
            fitted = cv2.resize(bars, (sw - 2, bars.shape[0]), interpolation=cv2.INTER_AREA)
            bars = np.asarray(fitted, dtype=np.uint8)
        bh, bw = bars.shape[:2]
        by, bx = int(cy - bh / 2), int(cx - bw / 2)
        canvas[by : by + bh, bx : bx + bw] = np.where(bars < 128, ink_v, paper_v).astype(np.uint8)[:, :, None]
    return canvas, (cx, cy), side


def _homography(
    rng: np.random.Generator, condition: str, canvas_wh: Size, centre: tuple[float, float],
    scale: float, frame_wh: Size, side: float,
) -> NDArray[np.float64]:
    """Project the canvas (a plane in 3-D) through a pinhole camera; code centre lands in frame."""
    fw, fh = frame_wh
    deg = math.radians
    rz = deg(rng.uniform(-20, 20))
    if condition == "perspective":
        big, small = deg(rng.uniform(30, 50)) * rng.choice([-1, 1]), deg(rng.uniform(-10, 10))
        rx, ry = (big, small) if rng.random() < 0.5 else (small, big)
    else:
        rx, ry = deg(rng.normal(0, 6)), deg(rng.normal(0, 6))
    phone, code = project(canvas_wh, centre, side, (rx, ry, rz), scale, frame_wh)
    # Put the code somewhere in the frame, fully visible with a small margin.
    lo, hi = code.min(axis=0), code.max(axis=0)
    margin = 8.0
    tx = rng.uniform(margin - lo[0], max(margin - lo[0], fw - margin - hi[0]))
    ty = rng.uniform(margin - lo[1], max(margin - lo[1], fh - margin - hi[1]))
    return placed(canvas_wh, phone, (tx, ty))


def project(
    canvas_wh: Size, centre: tuple[float, float], side: float, angles: tuple[float, float, float],
    scale: float, frame_wh: Size,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The phone canvas's corners and the code's corners (relative to the code's centre) in the frame.

    The canvas is a plane turned by *angles* (radians about x, y, z) at a distance at which one canvas
    pixel is ``1 / scale`` camera pixels, seen through a pinhole camera whose focal length is the frame
    width (about 60 degrees of horizontal view).
    """
    rx, ry, rz = angles
    f = float(frame_wh[0])
    cx_, sx_ = math.cos(rx), math.sin(rx)
    cy_, sy_ = math.cos(ry), math.sin(ry)
    cz_, sz_ = math.cos(rz), math.sin(rz)
    r = (np.array([[1, 0, 0], [0, cx_, -sx_], [0, sx_, cx_]])
         @ np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
         @ np.array([[cz_, -sz_, 0], [sz_, cz_, 0], [0, 0, 1]]))
    dist = f * scale  # world units = canvas px; at this distance one canvas px -> 1/scale camera px
    cw, ch = canvas_wh
    u, v = centre
    pts = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch],
                    [u - side / 2, v - side / 2], [u + side / 2, v - side / 2],
                    [u + side / 2, v + side / 2], [u - side / 2, v + side / 2]], dtype=np.float64)
    world = np.c_[pts - [u, v], np.zeros(len(pts))] @ r.T + [0, 0, dist]
    proj = f * world[:, :2] / world[:, 2:3]
    return np.asarray(proj[:4], np.float64), np.asarray(proj[4:], np.float64)


def placed(canvas_wh: Size, phone: NDArray[np.float64], shift: tuple[float, float]) -> NDArray[np.float64]:
    """The homography taking the canvas to its projected corners *phone* moved by *shift* (frame px)."""
    cw, ch = canvas_wh
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    dst = (phone + np.array(shift)).astype(np.float32)
    return np.asarray(cv2.getPerspectiveTransform(src, dst), dtype=np.float64)


def module_px(condition: str, modules: int, frame_h: int, rng: np.random.Generator) -> float:
    """Camera pixels per QR module for this condition (*modules* includes the quiet zone)."""
    if condition == "small":
        return float(rng.uniform(2.0, 2.6))
    if condition == "far":
        return float(rng.uniform(1.5, 2.5))
    return float(frame_h * rng.uniform(0.38, 0.5) / modules)


def synth_frame(
    text: str | None, condition: str, size: Size = (1280, 720), rng: np.random.Generator | int = 0
) -> Image:
    """One BGR camera frame of a phone showing *text* as a QR code, under *condition*.

    *rng* is a numpy Generator (consumed, so successive calls differ) or an int seed.  *text* is
    ignored for ``"no_code"``.  Raises ValueError for an unknown condition or a missing text.
    """
    if condition not in CONDITIONS:
        raise InvalidInput(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")
    if condition != "no_code" and not text:
        raise InvalidInput(f"condition {condition!r} needs a payload text")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    fw, fh = size
    symbol = qr_matrix(text) if condition != "no_code" and text else None
    modules = (symbol.shape[0] if symbol is not None else 45) + 2 * QUIET
    m = module_px(condition, modules, fh, gen)
    # Canvas px per module: for moire, real screen pixels (3 canvas px each, RGB stripes) at about one
    # screen pixel per camera pixel, the pitch at which a sampled screen grid beats against the
    # sensor; otherwise enough that the warp only ever downsamples gently.
    k = 3 * max(2, round(m * gen.uniform(0.9, 1.2))) if condition == "moire" else max(2, math.ceil(m * 1.5))
    frame = background(gen, fw, fh)
    phone = condition != "no_code" or gen.random() < 0.6
    if phone:
        canvas, centre, side = screen_canvas(symbol, k, condition == "dark_mode", gen, symbol is None)
        if condition == "moire":
            canvas = fx.subpixel_grid(canvas)
        elif condition == "cracked":
            canvas = fx.cracked_protector(canvas, k, gen)
        ch, cw = canvas.shape[:2]
        hom = _homography(gen, condition, (cw, ch), centre, k / m, (fw, fh), side)
        cv2.warpPerspective(canvas, hom, (fw, fh), dst=frame, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_TRANSPARENT)
        if condition in ("moire", "banding"):
            mask = np.asarray(cv2.warpPerspective(np.full((ch, cw), 255, np.uint8), hom, (fw, fh)), np.uint8)
            frame = fx.moire_bands(frame, mask, gen) if condition == "moire" else fx.refresh_bands(frame, mask, gen)
        if condition in ("glare", "finger"):
            inset = QUIET * k if condition == "finger" else 0  # the finger is placed on the symbol itself
            quad = _code_quad(hom, centre, side / 2 - inset)
            if condition == "glare":
                fx.glare(frame, gen, quad)
            else:
                fx.finger(frame, gen, quad)
    frame = np.asarray(cv2.GaussianBlur(frame, (0, 0), float(gen.uniform(0.5, 0.9))), dtype=np.uint8)
    if condition == "blur":
        frame = fx.blur(frame, m, gen)
    elif condition == "shake":
        frame = fx.shake(frame, m, gen)
    elif condition == "low_light":
        return fx.low_light(frame, gen)
    return expose(frame, gen)


def _code_quad(hom: NDArray[np.float64], centre: tuple[float, float], half: float) -> NDArray[np.float64]:
    """The corners of the square of half-side *half* around *centre* on the canvas, in frame pixels."""
    u, v = centre
    corners = np.array([[[u - half, v - half], [u + half, v - half], [u + half, v + half], [u - half, v + half]]])
    return np.asarray(cv2.perspectiveTransform(corners, hom)[0], dtype=np.float64)


def expose(frame: Image, gen: np.random.Generator) -> Image:
    """Exposure and sensor noise (luma only: chroma noise is irrelevant after grey conversion).

    OpenCV's generator, seeded from ours, is 3x faster than numpy's here and just as deterministic.
    """
    fh, fw = frame.shape[:2]
    cv2.setRNGSeed(int(gen.integers(2**31)))
    noise = np.empty((fh, fw), np.float32)
    cv2.randn(noise, np.array([gen.uniform(-10, 10)]), np.array([gen.uniform(1.5, 4.0)]))
    out = cv2.convertScaleAbs(frame, alpha=float(gen.uniform(0.85, 1.1)))
    return np.asarray(cv2.add(out, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U), dtype=np.uint8)


def write_frames(
    directory: str | Path,
    texts_and_conditions: Iterable[tuple[str | None, str]],
    size: Size = (1280, 720),
    seed: int = 0,
) -> list[Path]:
    """Write one PNG per ``(text, condition)`` pair into *directory* (created), in order.

    Files are named ``frame_0000_clean.png`` etc., so a directory camera source replays them in
    order.  Returns the paths written.

    Example::

        write_frames("/tmp/gate-demo", [("CP1:ABC", "clean"), (None, "no_code")], (640, 480))
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    for i, (text, condition) in enumerate(texts_and_conditions):
        path = out / f"frame_{i:04d}_{condition}.png"
        if not cv2.imwrite(str(path), synth_frame(text, condition, size, rng)):
            raise OSError(f"could not write {path}")
        paths.append(path)
    return paths
