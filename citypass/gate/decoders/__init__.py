"""QR decoders for the gate camera, behind one interface (see :mod:`citypass.gate.decoders.base`).

Four decoders, built by name with :func:`make_decoder` (the gate config's ``decoder`` field):

- ``"retry"`` (the default): zxing-cpp's local-average pass on every frame, and a bounded second look only
  where a code is likely — a symbol zxing-cpp located but could not decode, or QR-like texture — with the
  region rectified, upscaled and sharpened, deblurred, flattened, its hidden finder drawn back in, or
  averaged across frames (:mod:`citypass.gate.decoders.retry`).
- ``"zxing"``: zxing-cpp (:mod:`citypass.gate.decoders.zxing`), local-average binarizer with a global
  histogram retry, try-invert for dark mode.
- ``"zbar"``: ZBar via pyzbar (:mod:`citypass.gate.decoders.zbar`), the design card's choice, with an inverted
  retry for dark mode.
- ``"chain"``: zxing, then ZBar *without* its inverted retry when zxing reads nothing
  (:mod:`citypass.gate.decoders.chain`).

Why ``DEFAULT_DECODER = "retry"``: ``citypass bench decode`` (seed 0, 20 frames per condition and payload
size, 13 conditions including codes held far away, camera shake, low light, refresh bands, a thumb and a
cracked protector, at 640x480, 1280x720 and 1920x1080: 1560 frames with a code and 60 without; one core of
this development VM, shared with other work while it ran, so the absolute times are high and the ratios
are what to read):

=========  ===============  ==================  ======================  ===============
decoder    reads            mean ms, all        cost vs zxing: all /    false reads
                            frames              frames without a code
=========  ===============  ==================  ======================  ===============
retry      1538/1560 98.6%  7.96                1.15x / 1.00x           0
zxing      1450/1560 92.9%  6.94                1.00x / 1.00x           0
zbar       1250/1560 80.1%  107.71              15.5x / 21.7x           0
chain      1471/1560 94.3%  15.38               2.2x / 12.2x            0
=========  ===============  ==================  ======================  ===============

Per condition ``retry`` reads at least as many frames as the best single decoder (zxing-cpp, or ZBar for
moire and the thumb): far 115/120 against 91, shake 112 against 93, banding 116 against 103, finger 115
against ZBar's 109.  On a frame without a code it skips zxing-cpp's second (global-histogram) pass and runs
the texture search instead, about a tenth of a pass: 0.84-0.95x the plain adapter's time, best of
repeated runs.  The benchmark's rule (:func:`citypass.bench.decode_figures.recommend`: the decoder reading
the most frames with no false reads within 1.5x the best single decoder's cost over all frames and 1.2x on
frames without a code) picks it.  ``"zxing"`` remains for a gate whose CPU has nothing to spare for hard
frames; ``"chain"`` pays for ZBar on every frame zxing-cpp cannot read, which on an idle gate is every frame.

Example::

    >>> import numpy as np, segno
    >>> from citypass.gate.decoders import DEFAULT_DECODER, make_decoder
    >>> decoder = make_decoder(DEFAULT_DECODER)
    >>> qr = np.asarray(segno.make("CP1:HELLO", error="m", micro=False).matrix, dtype=np.uint8)
    >>> img = np.pad(np.kron(1 - qr, np.ones((6, 6), np.uint8)) * 255, 24, constant_values=255)
    >>> [(d.text, d.decoder) for d in decoder.decode(img)]
    [('CP1:HELLO', 'retry')]
    >>> decoder.decode(np.zeros((480, 640), np.uint8))
    []
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from citypass.errors import InvalidInput
from citypass.lazy import lazy_exports

# Each decoder's module loads its library (zxing-cpp, pyzbar, OpenCV) when the decoder is first made, so
# reading the gate config (which names the decoder) loads none of them.
if TYPE_CHECKING:
    from citypass.gate.decoders.base import Corners, Decoded, Decoder, to_gray
    from citypass.gate.decoders.chain import ChainDecoder
    from citypass.gate.decoders.retry import RetryDecoder
    from citypass.gate.decoders.zbar import ZbarDecoder
    from citypass.gate.decoders.zxing import ZxingDecoder
else:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "base": ["Corners", "Decoded", "Decoder", "to_gray"],
        "chain": ["ChainDecoder"],
        "retry": ["RetryDecoder"],
        "zbar": ["ZbarDecoder"],
        "zxing": ["ZxingDecoder"],
    })


def _zxing() -> Decoder:
    from citypass.gate.decoders.zxing import ZxingDecoder

    return ZxingDecoder()


def _zbar(try_invert: bool = True) -> Decoder:
    from citypass.gate.decoders.zbar import ZbarDecoder

    return ZbarDecoder(try_invert=try_invert)


def _chain() -> Decoder:
    from citypass.gate.decoders.chain import ChainDecoder

    # zxing already reads dark mode, so zbar's inverted retry adds cost and no reads in the chain.
    return ChainDecoder([_zxing(), _zbar(try_invert=False)], name="chain")


def _retry() -> Decoder:
    from citypass.gate.decoders.retry import RetryDecoder

    return RetryDecoder()


_FACTORIES: Final[dict[str, Callable[[], Decoder]]] = {
    "retry": _retry, "zxing": _zxing, "zbar": _zbar, "chain": _chain}

#: Names accepted by :func:`make_decoder`.
DECODER_NAMES: Final = tuple(_FACTORIES)
DEFAULT_DECODER: Final = "retry"
#: The decoders built on one library each; "chain" and "retry" build on them.
SINGLE_DECODERS: Final = ("zxing", "zbar")


def make_decoder(name: str = DEFAULT_DECODER) -> Decoder:
    """A fresh decoder by registry name: ``"zxing"``, ``"zbar"`` or ``"chain"``.

    Raises :class:`~citypass.errors.InvalidInput` (listing the valid names) for anything else, so a typo in the
    gate config is reported at start-up rather than at the first visitor.
    """
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise InvalidInput(f"unknown decoder {name!r}; expected one of {', '.join(DECODER_NAMES)}") from None
    return factory()


__all__ = [
    "DECODER_NAMES",
    "DEFAULT_DECODER",
    "SINGLE_DECODERS",
    "ChainDecoder",
    "Corners",
    "Decoded",
    "Decoder",
    "RetryDecoder",
    "ZbarDecoder",
    "ZxingDecoder",
    "make_decoder",
    "to_gray",
]
