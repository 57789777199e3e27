"""QR decoding with zxing-cpp (the ``zxingcpp`` module, 3.x API).

zxing-cpp is the C++ port of ZXing ("zebra crossing"), maintained for phone-camera scanning.  One
``read_barcodes`` call binarizes the grey frame, finds QR finder patterns at any angle, samples the
grid and corrects errors; with ``try_invert`` it also reads dark-mode (light-on-dark) codes.

Options, chosen by measurement: ``citypass.bench.decode.measure`` run on variant ``ZxingDecoder`` instances
over the benchmark's synthetic phone-screen frames (``bench/frames.py``), 30 frames per size x
condition x payload at 640x480 and 1280x720, seed 1 (held out from the seed 0 of the published
``citypass bench decode`` table), one core; "reads" counts correct texts of 840 frames with a code:

- ``formats=QRCode``: nothing else is returned, and the 1-D detectors never run.
- ``try_invert=True``: required for dark mode (light modules on dark): 120/120 dark-mode frames
  read.  It costs a second pass only when the first finds nothing.
- ``binarizer``: ``LocalAverage`` (the library default, a local threshold like ZXing's
  HybridBinarizer) reads 784/840 at 1.37 ms/frame; ``GlobalHistogram`` alone reads only 632/840
  (it loses blur, small and tilted codes) but it reads moire frames whose bands defeat the local
  threshold.  So the adapter runs ``LocalAverage`` and, only when that finds nothing,
  ``GlobalHistogram``: 819/840 at the same mean cost (1.28 ms/frame; the retry runs only on failed
  frames and is the cheaper pass).  ``fallback_binarizer=None`` restores a single pass.
- ``try_downscale=True`` (the library default): 819 vs 818 reads without it, for +0.4 ms/frame at
  1280x720 (1.80 vs 1.41).  A tie within noise, so the default stays; 0.4 ms is nothing against a
  33 ms frame.
- ``try_rotate=False``: rotation only matters to 1-D codes; the QR detector is rotation invariant
  (131/131 reads either way on a 140-frame sample), and it saves ~0.2 ms/frame.
- ``text_mode=Plain``: the content as encoded, without the human-readable decorations (GS1
  parentheses) that the default ``HRI`` mode adds.

Example::

    >>> import numpy as np, segno
    >>> from citypass.gate.decoders.zxing import ZxingDecoder
    >>> qr = np.asarray(segno.make("CP1:HELLO", error="m", micro=False).matrix, dtype=np.uint8)
    >>> img = np.pad(np.kron(1 - qr, np.ones((6, 6), np.uint8)) * 255, 24, constant_values=255)
    >>> [d.text for d in ZxingDecoder().decode(img)]
    ['CP1:HELLO']
    >>> [d.text for d in ZxingDecoder().decode(255 - img)]  # dark mode
    ['CP1:HELLO']
"""

from __future__ import annotations

from typing import Final, NamedTuple

import numpy as np
import zxingcpp

from citypass.gate.decoders.base import Corners, Decoded, GrayImage, to_gray

#: First pass: local thresholds cope with uneven light, glare, blur and tilt.
DEFAULT_BINARIZER: Final = zxingcpp.Binarizer.LocalAverage
#: Retry only when the first pass read nothing: one global threshold survives moire bands
#: (moire frames read: 78/120 local average alone, 97/120 global alone, 113/120 both).
DEFAULT_FALLBACK_BINARIZER: Final = zxingcpp.Binarizer.GlobalHistogram
DEFAULT_TRY_DOWNSCALE: Final = True

_QR_ONLY: Final = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


class Located(NamedTuple):
    """A QR symbol zxing-cpp found but could not decode: its corners (clockwise from the code's
    top-left) and how many modules wide it is (17 + 4 x its version)."""

    corners: Corners
    modules: int


class ZxingDecoder:
    """QR codes via ``zxingcpp.read_barcodes``; never raises, QR only, reads dark mode.

    The keyword arguments exist so the benchmark can compare variants; the gate uses the defaults
    (see the module docstring for the measurements behind them).
    """

    def __init__(
        self,
        *,
        binarizer: zxingcpp.Binarizer = DEFAULT_BINARIZER,
        fallback_binarizer: zxingcpp.Binarizer | None = DEFAULT_FALLBACK_BINARIZER,
        try_downscale: bool = DEFAULT_TRY_DOWNSCALE,
        try_invert: bool = True,
        name: str = "zxing",
    ) -> None:
        self.name = name
        self._binarizers = (binarizer,) if fallback_binarizer in (None, binarizer) else (
            binarizer, fallback_binarizer)
        self._try_downscale = try_downscale
        self._try_invert = try_invert

    def __repr__(self) -> str:
        names = "->".join(b.name for b in self._binarizers)
        return (f"ZxingDecoder(binarizers={names}, try_downscale={self._try_downscale}, "
                f"try_invert={self._try_invert})")

    def decode(self, frame: np.ndarray) -> list[Decoded]:
        """Every valid QR code in *frame*, in the order zxing-cpp reports them."""
        try:
            gray = to_gray(frame)
            if gray is None:
                return []
            return self.scan(gray)[0]
        except Exception:  # a library bug on a hostile frame must not stop the gate
            return []

    def scan(self, gray: GrayImage, *, located: bool = False) -> tuple[list[Decoded], list[Located]]:
        """The binarizer passes of :meth:`decode` on a grey frame: the codes read, and (with *located*)
        the symbols zxing-cpp found but could not decode (a checksum error: too small, too dark, partly
        covered), which tell a retry where to look.  May raise on a library error."""
        missed: list[Located] = []
        for binarizer in self._binarizers:
            found, failed = read(gray, binarizer, try_downscale=self._try_downscale, try_invert=self._try_invert,
                                 name=self.name, errors=located)
            if found:
                return found, []
            missed += failed
        return [], missed


def read(
    gray: GrayImage, binarizer: zxingcpp.Binarizer, *, try_downscale: bool = DEFAULT_TRY_DOWNSCALE,
    try_invert: bool = True, name: str = "zxing", errors: bool = False,
) -> tuple[list[Decoded], list[Located]]:
    """One ``zxingcpp.read_barcodes`` call: the valid QR codes, and with *errors* the QR symbols located
    but not decoded.  May raise on a library error (callers catch)."""
    barcodes = zxingcpp.read_barcodes(
        gray,
        formats=_QR_ONLY,
        try_rotate=False,
        try_downscale=try_downscale,
        try_invert=try_invert,
        text_mode=zxingcpp.TextMode.Plain,
        binarizer=binarizer,
        return_errors=errors,
    )
    out: list[Decoded] = []
    failed: list[Located] = []
    for b in barcodes:
        # Belt and braces: the format filter already excludes everything but QR Code.
        if b.format != zxingcpp.BarcodeFormat.QRCode:
            continue
        p = b.position
        corners: Corners = (
            (p.top_left.x, p.top_left.y),
            (p.top_right.x, p.top_right.y),
            (p.bottom_right.x, p.bottom_right.y),
            (p.bottom_left.x, p.bottom_left.y),
        )
        if b.valid:
            out.append(Decoded(text=b.text, decoder=name, corners=corners))
            continue
        # The detector also proposes Micro QR and rMQR readings of the same finder patterns ("M3",
        # "R7x77"); only a full-size version number gives the symbol's module count.
        extra = b.extra if isinstance(b.extra, dict) else {}
        version = str(extra.get("Version", ""))
        if version.isdigit() and 1 <= int(version) <= 40:
            failed.append(Located(corners, 17 + 4 * int(version)))
    return out, failed
