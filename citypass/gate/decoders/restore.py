"""Restoring a small crop around a likely code so that zxing-cpp can read it: scale, sharpen, flatten, deblur.

Each function takes and returns an 8-bit grey crop; they are the steps of
:class:`~citypass.gate.decoders.retry.RetryDecoder`'s second look, cheapest first.  Everything is OpenCV on a
crop of at most a few hundred pixels a side, a fraction of a millisecond each.

- :func:`rectify`: a symbol zxing-cpp located but could not decode, warped from its four corners onto
  an upright grid of four pixels per module.
- :func:`upscale`: zxing-cpp's detector wants about three pixels per module; a phone at arm's length
  gives 1.5-2.5.  Bicubic upscaling to about 3.5 px/module, then an unsharp mask, restores the module
  edges that the camera's optics softened.
- :func:`flatten`: a screen's PWM bands, a smudge or a shadow change the brightness across the code
  faster than a global threshold can follow.  Dividing by the local light envelope (a grey closing /
  opening over a few modules) leaves only the modules.  A light Gaussian first averages out sensor
  noise in low light.
- :func:`smear` / :func:`blur_length` / :func:`deblur`: camera shake smears the code along
  one direction.  The direction is where the crop's gradients are weakest (the structure tensor's
  minor axis); the length is where the autocorrelation of the derivative along that direction has its
  minimum (a box blur of length L makes the derivative a difference of two copies L apart).  A Wiener
  filter with that line kernel undoes most of the smear.

Example::

    >>> import numpy as np, cv2, segno, zxingcpp
    >>> from citypass.gate.decoders.restore import blur_length, deblur, line_kernel, smear
    >>> qr = np.asarray(segno.make("CP1:" + "B" * 100, error="m", micro=False).matrix, dtype=np.uint8)
    >>> sharp = np.pad(np.kron(1 - qr, np.ones((5, 5), np.uint8)) * 255, 20, constant_values=255)
    >>> smeared = cv2.filter2D(sharp, -1, line_kernel(9.0, 0.5))
    >>> zxingcpp.read_barcodes(smeared)
    []
    >>> theta, isotropy = smear(smeared)
    >>> round(theta, 1), round(isotropy, 1), blur_length(smeared, theta, 20)
    (0.4, 0.2, 10)
    >>> [b.text[:6] for b in zxingcpp.read_barcodes(deblur(smeared, 9.0, theta))]
    ['CP1:BB']
"""

from __future__ import annotations

import math
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from citypass.gate.decoders.base import Corners, GrayImage

#: Pixels per module zxing-cpp's detector reads reliably, which :func:`upscale` aims for.
TARGET_MODULE_PX: Final = 3.5
#: Wiener noise-to-signal constant: lower restores more contrast and more ringing; 0.01 read the most
#: shaken codes on the benchmark's frames (0.005 and 0.03 both fewer).
WIENER_NSR: Final = 0.01


def _u8(img: NDArray[np.floating]) -> GrayImage:
    return np.asarray(np.clip(img, 0, 255), dtype=np.uint8)


def upscale(crop: GrayImage, factor: float, sharpen: float = 1.0) -> GrayImage:
    """Bicubic upscale by *factor* (≥ 1), then an unsharp mask of strength *sharpen* over about a module."""
    out = crop
    if factor > 1.05:
        out = np.asarray(cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC), np.uint8)
    if sharpen > 0:
        soft = cv2.GaussianBlur(out, (0, 0), max(1.0, 0.45 * TARGET_MODULE_PX))
        out = np.asarray(cv2.addWeighted(out, 1 + sharpen, soft, -sharpen, 0), np.uint8)
    return np.ascontiguousarray(out)


def rectify(gray: GrayImage, corners: Corners, modules: int, module_px: float = 4.0) -> GrayImage:
    """The symbol with *corners* in *gray* warped onto an upright square grid, *module_px* pixels per
    module, with the 4-module quiet zone around it (bicubic; the frame's edge is repeated outside it).

    zxing-cpp reports the corners of a symbol it located even when it could not decode it, and the
    module count from the version it read: so a code seen obliquely at two pixels per module becomes
    a square one at four, where the next attempt starts from a clean grid.
    """
    quiet, side = 4 * module_px, modules * module_px
    dst = np.array([[quiet, quiet], [quiet + side, quiet], [quiet + side, quiet + side], [quiet, quiet + side]],
                   np.float32)
    matrix = cv2.getPerspectiveTransform(np.array(corners, np.float32), dst)
    full = round(side + 2 * quiet)
    return np.asarray(cv2.warpPerspective(gray, matrix, (full, full), flags=cv2.INTER_CUBIC,
                                          borderMode=cv2.BORDER_REPLICATE), np.uint8)


def flatten(crop: GrayImage, module_px: float, denoise: bool = True) -> GrayImage:
    """Divide out uneven light: stretch each pixel between the local dark and light envelopes.

    The envelopes are a grey opening / closing over about three modules, smoothed, so light modules
    reach 255 and dark modules 0 wherever they are, whatever the band or the smudge did to them.
    """
    src = cv2.GaussianBlur(crop, (0, 0), max(0.6, 0.3 * module_px)) if denoise else crop
    k = max(3, round(3 * module_px) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    light = cv2.blur(cv2.dilate(src, kernel), (k, k)).astype(np.float32)
    dark = cv2.blur(cv2.erode(src, kernel), (k, k)).astype(np.float32)
    return _u8((src.astype(np.float32) - dark) * 255 / np.maximum(light - dark, 16.0))


def smear(crop: GrayImage) -> tuple[float, float]:
    """The direction (radians, 0..π) along which *crop* is smeared, and how isotropic its gradients are.

    The direction is the structure tensor's minor axis (where the gradients are weakest); the second
    value is minor / major eigenvalue: near 1 for a sharp code (its edges run both ways), lower the
    more it is smeared one way.
    """
    gx = cv2.Sobel(crop, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(crop, cv2.CV_32F, 0, 1)
    a, b, d = float(gx.ravel() @ gx.ravel()), float(gx.ravel() @ gy.ravel()), float(gy.ravel() @ gy.ravel())
    root = math.hypot(a - d, 2 * b)
    ratio = (a + d - root) / (a + d + root) if a + d > 0 else 1.0
    return (0.5 * math.atan2(2 * b, a - d) + math.pi / 2) % math.pi, ratio


def blur_length(crop: GrayImage, theta: float, max_len: int) -> int:
    """The smear's length in pixels along *theta*: the lag (1..max_len) where the autocorrelation of the
    derivative along *theta* is lowest."""
    c, s = math.cos(theta), math.sin(theta)
    d = cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=1) * c + cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=1) * s
    d -= float(d.mean())
    h, w = d.shape
    # Zero padding by the longest lag keeps the circular correlation from wrapping into the lags we read.
    big_h, big_w = cv2.getOptimalDFTSize(h + max_len + 1), cv2.getOptimalDFTSize(w + max_len + 1)
    spectrum = cv2.dft(cv2.copyMakeBorder(d, 0, big_h - h, 0, big_w - w, cv2.BORDER_CONSTANT, value=0),
                       flags=cv2.DFT_COMPLEX_OUTPUT)
    power = cv2.mulSpectrums(spectrum, spectrum, 0, conjB=True)
    corr = cv2.idft(power, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    lags = np.arange(1, max_len + 1, dtype=np.float32)
    xs = ((lags * c) % big_w).reshape(1, -1).astype(np.float32)
    ys = ((lags * s) % big_h).reshape(1, -1).astype(np.float32)
    along = cv2.remap(corr, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)[0]
    return int(lags[int(np.argmin(along))])


def line_kernel(length: float, theta: float) -> NDArray[np.float32]:
    """A straight motion-blur kernel *length* pixels long at angle *theta*, anti-aliased, summing to 1."""
    n = 2 * math.ceil(length / 2) + 3
    k = np.zeros((n, n), np.float32)
    c = (n - 1) / 2
    dx, dy = math.cos(theta) * length / 2, math.sin(theta) * length / 2
    p0 = (round((c - dx) * 16), round((c - dy) * 16))
    p1 = (round((c + dx) * 16), round((c + dy) * 16))
    cv2.line(k, p0, p1, 1.0, 1, cv2.LINE_AA, shift=4)
    total = float(k.sum())
    if total <= 0:
        k[n // 2, n // 2] = total = 1.0
    return np.asarray(k / total, np.float32)


def deblur(crop: GrayImage, length: float, theta: float, nsr: float = WIENER_NSR) -> GrayImage:
    """Wiener deconvolution of *crop* with a straight smear of *length* pixels at *theta*."""
    kernel = line_kernel(length, theta)
    h, w = crop.shape
    kh, kw = kernel.shape
    big_h, big_w = cv2.getOptimalDFTSize(h + kh), cv2.getOptimalDFTSize(w + kw)
    padded = cv2.copyMakeBorder(crop.astype(np.float32), 0, big_h - h, 0, big_w - w, cv2.BORDER_REFLECT)
    psf = np.zeros((big_h, big_w), np.float32)
    psf[:kh, :kw] = kernel
    psf = np.roll(psf, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    g = cv2.dft(padded, flags=cv2.DFT_COMPLEX_OUTPUT)
    hk = cv2.dft(psf, flags=cv2.DFT_COMPLEX_OUTPUT)
    power = hk[..., 0] ** 2 + hk[..., 1] ** 2 + nsr
    # conj(H) * G / (|H|^2 + nsr), written out on the real and imaginary planes
    num = cv2.mulSpectrums(g, hk, 0, conjB=True)
    restored = cv2.idft(num / power[..., None], flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    return _u8(np.asarray(restored[:h, :w], np.float32))
