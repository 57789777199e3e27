"""What the screen, the hand and the camera do to a phone-screen picture: one function per effect.

:func:`citypass.bench.frames.synth_frame` draws the phone and projects it into the camera frame; the effects
here are what makes each condition hard.  They are deterministic given the random generator they
consume, and each is a few array operations with OpenCV (frame synthesis is never timed, but the
benchmarks make thousands of frames).

On the screen (the phone's glass and pixels, drawn on the canvas before the projection):

- :func:`subpixel_grid` and :func:`moire_bands`: the screen's RGB stripes beating against the sensor;
- :func:`cracked_protector`: cracks radiating from an impact point and greasy smudges on a screen
  protector (a cracked protector is common on phones shown at gates).

In the scene (after the projection, in camera pixels):

- :func:`glare`: a ceiling light reflected on the glass;
- :func:`refresh_bands`: dark horizontal bands where the screen's PWM dimming beats against the
  camera's rolling shutter (each sensor row is exposed at a slightly different moment);
- :func:`finger`: a thumb with its shadow reaching over one edge of the code.

In the camera:

- :func:`blur`: a short motion blur or a defocus disk;
- :func:`shake`: a hand shaking the phone during the exposure: a curved motion-blur path of random
  direction and length (up to about two modules);
- :func:`low_light`: a dim scene and a dimmed screen, so the sensor's gain amplifies shot and read noise.

Example::

    >>> import numpy as np
    >>> from citypass.bench.frame_effects import shake_kernel
    >>> k = shake_kernel(9.0, np.random.default_rng(1))
    >>> round(float(k.sum()), 3), k.shape[0] == k.shape[1]
    (1.0, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]


def u8(img: NDArray[np.floating] | NDArray[np.integer]) -> Image:
    """Clip to 0..255 and convert to ``uint8``."""
    return np.asarray(np.clip(img, 0, 255), dtype=np.uint8)


# -- on the screen -------------------------------------------------------------------------------------------
def subpixel_grid(canvas: Image) -> Image:
    """Multiply the canvas by an RGB-stripe LCD grid (3x3 canvas px per screen pixel), in uint8."""
    h, w = canvas.shape[:2]
    cell = np.full((3, 3, 3), 90, dtype=np.uint8)  # gaps between sub-pixels are dim, not black
    for ch in range(3):  # columns R, G, B (BGR channel 2, 1, 0); the last row is the pixel gap
        cell[:2, ch, 2 - ch] = 255
    tiled = np.tile(cell, (h // 3 + 1, w // 3 + 1, 1))[:h, :w]
    return np.asarray(cv2.multiply(canvas, tiled, scale=1.6 / 255), dtype=np.uint8)


def moire_bands(img: Image, mask: Image, rng: np.random.Generator) -> Image:
    """Darken the screen area with curved, coloured interference bands (period 12-40 px).

    The sampled sub-pixel grid alone aliases into fine texture; the broad bands seen when filming a
    screen come from the grid's beat with the sensor's Bayer pattern, modelled here directly.
    """
    h, w = img.shape[:2]
    hs, ws = h // 2, w // 2  # the bands are smooth: compute them at half resolution, then upscale
    yy, xx = np.mgrid[0:hs, 0:ws].astype(np.float32)
    period = float(rng.uniform(12, 40)) / 2
    theta = float(rng.uniform(0, math.pi))
    bend = float(rng.uniform(-1.5, 1.5)) / ws
    phase = (math.cos(theta) * xx + math.sin(theta) * yy + bend * (xx - ws / 2) ** 2) * (2 * math.pi / period)
    depth = float(rng.uniform(0.35, 0.6))
    on_screen = np.asarray(cv2.resize(mask, (ws, hs), interpolation=cv2.INTER_LINEAR), np.float32)
    on_screen *= depth / 255
    cos_p, sin_p = np.cos(phase), np.sin(phase)
    # B, G and R sub-pixels sit a third of a pixel apart, so their beats are a third of a period
    # apart too: the colour fringes are strong, the luma bands (what a decoder sees) about 0.4x as deep.
    shifts = (4 * math.pi / 3, 2 * math.pi / 3, 0.0)
    # cos(phase + d) by the angle-sum identity: two transcendental passes instead of three.
    waves = [cos_p * math.cos(d) - sin_p * math.sin(d) for d in shifts]
    bands = cv2.merge([1 - on_screen * (0.5 + 0.5 * wave) for wave in waves])
    gain = np.asarray(cv2.resize(bands, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    return np.asarray(cv2.convertScaleAbs(cv2.multiply(img.astype(np.float32), gain)), dtype=np.uint8)


def cracked_protector(canvas: Image, k: int, rng: np.random.Generator) -> Image:
    """Cracks and smudges on the screen protector, drawn on the phone canvas (*k* canvas px per module).

    Three to six cracks run from an impact point somewhere on the screen in a jagged random walk;
    glass scatters light at a crack, so each is a bright line (about a fifth of a module wide) with a
    thin dark edge.  Two to four greasy smudges veil the screen in a grey haze that lowers the
    contrast locally by up to about half.
    """
    h, w = canvas.shape[:2]
    out = canvas.astype(np.float32)
    cracks = np.zeros((h, w), np.uint8)
    edges = np.zeros((h, w), np.uint8)
    origin = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.15, 0.75) * h])
    width = max(1, round(k * rng.uniform(0.15, 0.3)))
    for _ in range(int(rng.integers(3, 7))):
        angle, point = float(rng.uniform(0, 2 * math.pi)), origin.copy()
        path = [point.copy()]
        for _ in range(int(rng.integers(6, 16))):
            angle += float(rng.normal(0, 0.35))
            point = point + k * float(rng.uniform(2, 6)) * np.array([math.cos(angle), math.sin(angle)])
            path.append(point.copy())
        pts = np.round(np.array(path)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(cracks, [pts], False, 255, width, cv2.LINE_AA)
        cv2.polylines(edges, [pts + max(1, width)], False, 255, max(1, width // 2), cv2.LINE_AA)
    bright = np.float32(rng.uniform(0.55, 0.85) / 255) * cracks.astype(np.float32)[:, :, None]
    dark = np.float32(0.5 / 255) * edges.astype(np.float32)[:, :, None]
    out = out * (1 - dark)
    out = out * (1 - bright) + np.float32(235) * bright
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        sx, sy = w * rng.uniform(0.1, 0.3), h * rng.uniform(0.05, 0.2)
        veil = float(rng.uniform(0.25, 0.5)) * np.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
        out = out * (1 - veil[:, :, None]) + float(rng.uniform(140, 200)) * veil[:, :, None]
    return u8(out)


# -- in the scene ----------------------------------------------------------------------------------------------
def glare(img: Image, rng: np.random.Generator, quad: NDArray[np.float64]) -> None:
    """Add a saturating elliptical highlight centred inside the code's quadrilateral, in place."""
    h, w = img.shape[:2]
    side = float(np.linalg.norm(quad[1] - quad[0]))
    a, b = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75)
    centre = quad[0] + a * (quad[1] - quad[0]) + b * (quad[3] - quad[0])
    sx, sy = side * rng.uniform(0.07, 0.13), side * rng.uniform(0.04, 0.09)
    theta = rng.uniform(0, math.pi)
    reach = int(3 * max(sx, sy))
    x0, x1 = max(0, int(centre[0]) - reach), min(w, int(centre[0]) + reach)
    y0, y1 = max(0, int(centre[1]) - reach), min(h, int(centre[1]) + reach)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx - centre[0], yy - centre[1]
    c, s = math.cos(theta), math.sin(theta)
    d2 = ((c * dx + s * dy) / sx) ** 2 + ((-s * dx + c * dy) / sy) ** 2
    blob = float(rng.uniform(230, 320)) * np.exp(-0.5 * d2)
    img[y0:y1, x0:x1] = u8(img[y0:y1, x0:x1] + blob[:, :, None])


@dataclass(frozen=True, slots=True)
class Bands:
    """Refresh bands in sensor rows: period (px), the dark share of a period, and how dark it is."""

    period: float
    duty: float
    depth: float

    @classmethod
    def draw(cls, rng: np.random.Generator, frame_h: int) -> Bands:
        """Period 4-15 % of the frame height, dark 30-60 % of it, 30-55 % of the screen's light lost."""
        period = frame_h * float(rng.uniform(0.04, 0.15))
        return cls(period, float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.3, 0.55)))

    def apply(self, img: Image, mask: Image, phase: float) -> Image:
        """Darken the screen (*mask*) with these bands, shifted by *phase* periods (they roll over time)."""
        rows = (np.arange(img.shape[0], dtype=np.float32) / self.period + phase) % 1.0
        soft = 0.08  # the band edges are graded: the row exposure overlaps the PWM edge
        dark = np.clip((self.duty - np.abs(rows - self.duty / 2 - soft) + soft) / (2 * soft), 0, 1)
        gain = 1 - self.depth * dark[:, None] * (mask.astype(np.float32) / 255)
        return u8(img.astype(np.float32) * gain[:, :, None])


def refresh_bands(img: Image, mask: Image, rng: np.random.Generator) -> Image:
    """Darken the screen area with soft horizontal bands in sensor rows (PWM dimming x rolling shutter).

    Each sensor row is exposed at a slightly different moment, so a screen whose backlight pulses
    shows dark bands across the frame whatever the phone's angle, and a code's modules change
    brightness from one band to the next (:class:`Bands` draws them).
    """
    bands = Bands.draw(rng, img.shape[0])
    return bands.apply(img, mask, float(rng.uniform(0, 1)))


def finger(img: Image, rng: np.random.Generator, symbol: NDArray[np.float64]) -> None:
    """Draw a thumb (and its shadow) reaching over one edge of the code, in place.

    *symbol* is the code's quadrilateral without its quiet zone (top-left, top-right, bottom-right,
    bottom-left in frame pixels).  The thumb comes from the bottom (half the time) or from a side, is
    55-80 % of the code's side wide, and its tip reaches 5-14 % of the side into the code, so it can
    clip a finder pattern but leaves most of the modules visible.
    """
    h, w = img.shape[:2]
    side = float(np.linalg.norm(symbol[1] - symbol[0]))
    edge = int(rng.choice([2, 2, 1, 3]))  # 2 = bottom edge (bottom-right -> bottom-left), 1 = right, 3 = left
    a, b = symbol[edge], symbol[(edge + 1) % 4]
    along = a + float(rng.uniform(0.25, 0.75)) * (b - a)
    inward = (symbol.mean(axis=0) - along) / np.linalg.norm(symbol.mean(axis=0) - along)
    half_w, half_l = side * float(rng.uniform(0.28, 0.4)), side * 1.2
    centre = along + inward * (side * float(rng.uniform(0.05, 0.14)) - half_l)
    angle = math.degrees(math.atan2(inward[1], inward[0])) + float(rng.normal(0, 10))
    box = ((float(centre[0]), float(centre[1])), (2 * half_l, 2 * half_w), angle)
    shadow = np.zeros((h, w), np.uint8)
    shift = inward * side * 0.04
    cv2.ellipse(shadow, ((box[0][0] + shift[0], box[0][1] + shift[1]), box[1], angle), 255, -1, cv2.LINE_AA)
    shadow_f = cv2.GaussianBlur(shadow, (0, 0), max(1.0, side * 0.03)).astype(np.float32) / 255
    thumb = np.zeros((h, w), np.uint8)
    cv2.ellipse(thumb, box, 255, -1, cv2.LINE_AA)
    thumb_f = cv2.GaussianBlur(thumb, (0, 0), max(0.8, side * 0.006)).astype(np.float32) / 255
    skin = np.array([rng.uniform(95, 140), rng.uniform(125, 170), rng.uniform(175, 225)], np.float32)
    # Shading: the thumb is rounder towards its edges, so darker there (distance to the outline).
    depth = cv2.distanceTransform(thumb, cv2.DIST_L2, 3)
    shade = 0.55 + 0.45 * np.clip(depth / max(1.0, half_w * 0.6), 0, 1)
    out = img.astype(np.float32) * (1 - 0.45 * shadow_f[:, :, None])
    out = out * (1 - thumb_f[:, :, None]) + (skin * shade[:, :, None]) * thumb_f[:, :, None]
    img[:] = u8(out)


# -- in the camera ---------------------------------------------------------------------------------------------
def blur(img: Image, m: float, rng: np.random.Generator) -> Image:
    """Motion blur over ~1-1.6 modules, or defocus (disk) of radius ~0.5-0.8 modules."""
    if rng.random() < 0.5:
        length = max(3, round(m * rng.uniform(1.0, 1.6)))
        k = np.zeros((length, length), dtype=np.float32)
        k[length // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        k = np.asarray(cv2.warpAffine(k, rot, (length, length)), dtype=np.float32)
    else:
        r = max(1.0, m * rng.uniform(0.5, 0.8))
        n = 2 * math.ceil(r) + 1
        yy, xx = np.mgrid[:n, :n] - n // 2
        k = (xx**2 + yy**2 <= r * r).astype(np.float32)
    k /= k.sum()
    return np.asarray(cv2.filter2D(img, -1, k), dtype=np.uint8)


def shake_kernel(length: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """A motion-blur kernel along a curved path *length* pixels long, in a random direction, summing to 1.

    A hand trembles at 8-12 Hz, slower than an exposure of a few milliseconds, so during one exposure
    the phone moves at a nearly steady speed along a slightly curved path: an arc whose middle bends
    sideways by up to a fifth of its length.
    """
    n = 2 * math.ceil(length / 2) + 3
    theta = float(rng.uniform(0, math.pi))
    d = np.array([math.cos(theta), math.sin(theta)])
    bend = float(rng.uniform(-0.2, 0.2)) * length * np.array([-d[1], d[0]])
    t = np.linspace(0, 1, 8 * n)
    pts = (t[:, None] - 0.5) * length * d + (4 * t * (1 - t))[:, None] * bend
    pts += (n - 1) / 2 - pts.mean(axis=0)
    k = np.zeros((n, n), np.float32)
    x0, y0 = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
    fx, fy = pts[:, 0] - x0, pts[:, 1] - y0
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (np.clip(y0 + dy, 0, n - 1), np.clip(x0 + dx, 0, n - 1)), wgt.astype(np.float32))
    return np.asarray(k / k.sum(), dtype=np.float32)


def shake(img: Image, m: float, rng: np.random.Generator) -> Image:
    """Camera shake: a :func:`shake_kernel` 0.6-2.2 modules long (*m* camera px per module)."""
    k = shake_kernel(max(1.5, m * float(rng.uniform(0.6, 2.2))), rng)
    return np.asarray(cv2.filter2D(img, -1, k), dtype=np.uint8)


def motion_blur(img: Image, dx: float, dy: float) -> Image:
    """Blur along a straight move of (*dx*, *dy*) pixels during the exposure (nothing below one pixel)."""
    length = math.hypot(dx, dy)
    if length < 1.0:
        return img
    n = 2 * math.ceil(length / 2) + 3
    k = np.zeros((n, n), np.float32)
    c = (n - 1) / 2
    p0 = (round((c - dx / 2) * 16), round((c - dy / 2) * 16))
    p1 = (round((c + dx / 2) * 16), round((c + dy / 2) * 16))
    cv2.line(k, p0, p1, 1.0, 1, cv2.LINE_AA, shift=4)
    return np.asarray(cv2.filter2D(img, -1, k / max(float(k.sum()), 1e-6)), dtype=np.uint8)


def low_light(img: Image, rng: np.random.Generator) -> Image:
    """A dim scene: 15-35 % of the light, shot and read noise, then the sensor's gain (1.8-3x).

    Replaces the ordinary exposure and noise step.  The noise is the same in the three channels
    (luma noise; chroma noise disappears in the grey conversion anyway).
    """
    h, w = img.shape[:2]
    signal = img.astype(np.float32) * float(rng.uniform(0.15, 0.35))
    cv2.setRNGSeed(int(rng.integers(2**31)))
    noise = np.empty((h, w), np.float32)
    cv2.randn(noise, np.array([0.0]), np.array([1.0]))
    read = float(rng.uniform(1.5, 3.0))
    luma = signal.mean(axis=2)
    sigma = np.sqrt(read * read + 0.35 * luma)  # shot noise grows with the square root of the light
    noisy = signal + (noise * sigma)[:, :, None]
    return u8(noisy * float(rng.uniform(1.8, 3.0)))
