"""Short synthetic video clips of a visitor presenting a phone: the code comes into view, is held with
a trembling hand, and leaves.

``citypass bench video`` decodes these clips frame by frame, as the gate does, to measure the time
from the first frame that shows the whole code to the decision.  A clip is made like one frame of
:mod:`citypass.bench.frames` (the same scene, phone and camera) but keeps the scene and the phone
and moves the phone between frames:

- **enter**: after a few empty frames the phone slides in from a side of the frame over five frames;
- **hold**: it stays in view, trembling (a hand shakes at 8-12 Hz: a sinusoidal wobble); each frame is
  blurred along the phone's velocity during the exposure (a third of the frame interval);
- **leave**: it slides out again over five frames.

Kinds (``CLIP_KINDS``):

- ``steady``: a code 30-45 % of the frame high, a small tremor;
- ``shaky``: a strong tremor: the blur runs up to about 2.5 modules at the fastest point of the
  wobble and falls to nothing at its turning points;
- ``far``: 1.5-2.3 camera pixels per module, a small tremor;
- ``dim``: low light (the gain's noise, fresh in every frame) and a longer exposure (two thirds of the
  frame interval), so the same tremor blurs more;
- ``banding``: the screen's PWM bands, rolling through the frame from one frame to the next.

Example::

    >>> import numpy as np
    >>> from citypass.bench.clips import make_clip
    >>> clip = make_clip("CP1:" + "A" * 170, "steady", (640, 480), np.random.default_rng(1), frames=24)
    >>> len(clip.frames), clip.frames[0].shape, 0 < clip.first_in_view < clip.last_in_view < 24
    (24, (480, 640, 3), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from citypass.bench import frame_effects as fx
from citypass.bench.frames import QUIET, Image, Size, background, expose, placed, project, qr_matrix, screen_canvas
from citypass.errors import InvalidInput

CLIP_KINDS: Final = ("steady", "shaky", "far", "dim", "banding")
FPS: Final = 30.0
LEAD_IN: Final = 3  # empty frames before the phone appears
MOVE: Final = 5  # frames to slide in, and to slide out
EXPOSURE: Final = 1 / 3  # share of the frame interval the sensor integrates (dim: twice as long)


@dataclass(frozen=True)
class Clip:
    """The frames of one presentation, and which of them show the whole code."""

    kind: str
    text: str
    frames: list[Image]
    first_in_view: int  # the first frame with the whole code inside the frame
    last_in_view: int


def _tremor(rng: np.random.Generator, module: float, kind: str) -> tuple[float, float, float, float]:
    """Amplitude (px), frequency (cycles per frame), phase and direction (radians) of the hand's wobble."""
    freq = float(rng.uniform(8, 12)) / FPS
    # Peak speed 2·π·f·A px/frame; the blur is that times the exposure.  Aim the peak blur, in modules:
    peak_blur = float(rng.uniform(1.2, 2.5)) if kind == "shaky" else float(rng.uniform(0.1, 0.4))
    exposure = EXPOSURE * (2 if kind == "dim" else 1)
    amplitude = peak_blur * module / (2 * math.pi * freq * exposure)
    return amplitude, freq, float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, math.pi))


def make_clip(text: str, kind: str, size: Size, rng: np.random.Generator, frames: int = 45) -> Clip:
    """Render one clip of *frames* frames (at least 20) showing *text* as a QR code on a phone."""
    if kind not in CLIP_KINDS:
        raise InvalidInput(f"unknown clip kind {kind!r}; expected one of {', '.join(CLIP_KINDS)}")
    if frames < LEAD_IN + 2 * MOVE + 5:
        raise InvalidInput(f"a clip needs at least {LEAD_IN + 2 * MOVE + 5} frames")
    fw, fh = size
    symbol = qr_matrix(text)
    modules = symbol.shape[0] + 2 * QUIET
    module = float(rng.uniform(1.5, 2.3)) if kind == "far" else fh * float(rng.uniform(0.3, 0.45)) / modules
    k = max(2, math.ceil(module * 1.5))
    scene = background(rng, fw, fh)
    canvas, centre, side = screen_canvas(symbol, k, False, rng, False)
    ch, cw = canvas.shape[:2]
    angles = (math.radians(rng.normal(0, 6)), math.radians(rng.normal(0, 6)), math.radians(rng.uniform(-20, 20)))
    phone, code = project((cw, ch), centre, side, angles, k / module, size)
    lo, hi = code.min(axis=0), code.max(axis=0)
    span = hi - lo
    rest = np.array([rng.uniform(-lo[0] + 0.1 * fw, fw - hi[0] - 0.1 * fw) if fw - span[0] > 0.2 * fw else fw / 2,
                     rng.uniform(-lo[1] + 0.1 * fh, fh - hi[1] - 0.1 * fh) if fh - span[1] > 0.2 * fh else fh / 2])
    away = _offstage(rng, rest, phone, size)
    amplitude, freq, phase, direction = _tremor(rng, module, kind)
    wobble = np.array([math.cos(direction), math.sin(direction)])
    bands = fx.Bands.draw(rng, fh) if kind == "banding" else None
    band_speed = float(rng.uniform(0.05, 0.3))  # periods per frame: the PWM and frame rates nearly beat
    optics = float(rng.uniform(0.5, 0.9))
    exposure = EXPOSURE * (2 if kind == "dim" else 1)
    mask_canvas = np.full((ch, cw), 255, np.uint8)

    def position(t: float) -> NDArray[np.float64]:
        hold_from, hold_to = LEAD_IN + MOVE, frames - MOVE
        shake = wobble * amplitude * math.sin(2 * math.pi * freq * t + phase)
        if t < hold_from:
            travel = min(1.0, max(0.0, (t - LEAD_IN) / MOVE))
            where = away + (rest - away) * travel
        elif t > hold_to:
            where = rest + (away - rest) * min(1.0, (t - hold_to) / MOVE)
        else:
            where = rest
        return np.asarray(where + shake, np.float64)

    out: list[Image] = []
    inside: list[int] = []
    for i in range(frames):
        frame = scene.copy()
        shift = position(float(i))
        if i >= LEAD_IN:
            hom = placed((cw, ch), phone, (float(shift[0]), float(shift[1])))
            cv2.warpPerspective(canvas, hom, (fw, fh), dst=frame, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_TRANSPARENT)
            if bands is not None:
                mask = np.asarray(cv2.warpPerspective(mask_canvas, hom, (fw, fh)), np.uint8)
                frame = bands.apply(frame, mask, band_speed * i)
            quad = code + shift
            if quad[:, 0].min() >= 0 and quad[:, 1].min() >= 0 and quad[:, 0].max() < fw and quad[:, 1].max() < fh:
                inside.append(i)
        frame = np.asarray(cv2.GaussianBlur(frame, (0, 0), optics), np.uint8)
        # The phone moves during the exposure: blur along its velocity (the scene stays sharp enough).
        velocity = position(i + exposure / 2) - position(i - exposure / 2)
        frame = fx.motion_blur(frame, float(velocity[0]), float(velocity[1]))
        out.append(fx.low_light(frame, rng) if kind == "dim" else expose(frame, rng))
    if not inside:
        raise InvalidInput("the code never came fully into view (frame too small for it)")
    return Clip(kind, text, out, inside[0], inside[-1])


def _offstage(rng: np.random.Generator, rest: NDArray[np.float64], phone: NDArray[np.float64], size: Size,
              ) -> NDArray[np.float64]:
    """Where the phone comes from: its resting place moved past a random side of the frame."""
    fw, fh = size
    lo, hi = phone.min(axis=0), phone.max(axis=0)
    side = int(rng.integers(0, 4))
    away = rest.copy()
    if side == 0:
        away[0] = -hi[0] - 2
    elif side == 1:
        away[0] = fw - lo[0] + 2
    elif side == 2:
        away[1] = fh - lo[1] + 2
    else:
        away[1] = -hi[1] - 2
    return away
