"""QR decoders for the gate camera, behind one interface (see :mod:`citypass.gate.decoders.base`).

Three decoders, built by name with :func:`make_decoder` (the gate config's ``decoder`` field):

- ``"zxing"``: zxing-cpp (:mod:`citypass.gate.decoders.zxing`), local-average binarizer with a global
  histogram retry, try-invert for dark mode.
- ``"zbar"``: ZBar via pyzbar (:mod:`citypass.gate.decoders.zbar`), the design card's choice, with an inverted
  retry for dark mode.
- ``"chain"``: zxing, then ZBar *without* its inverted retry when zxing reads nothing
  (:mod:`citypass.gate.decoders.chain`).  zxing already reads dark mode: on a held-out run (seed 1, 840 code
  frames) the chain read 826 frames with or without ZBar's inversion, which only doubled the cost of
  a frame without a code (43.9 vs 22.9 ms at 1280x720).  ZBar first read the same 826 frames at
  21.3 ms/frame mean instead of 2.5.

Why ``DEFAULT_DECODER = "zxing"``: ``citypass bench decode --frames 20 --size 640x480,1280x720``
(seed 0: 560 frames with a code over 7 conditions x 2 payload sizes x 2 frame sizes, plus 40
without; decode only, one core of this development VM):

=========  ==============  ===================  =====================  =====================
decoder    reads           mean ms (all sizes)  1280x720 mean / p95    1280x720 no-code mean
=========  ==============  ===================  =====================  =====================
zxing      547/560 97.7 %  1.40                 1.93 / 2.83 (518/s)    2.15 ms
zbar       474/560 84.6 %  22.05                31.99 / 50.17 (31/s)   45.02 ms
chain      551/560 98.4 %  2.81                 3.87 / 22.85 (258/s)   24.31 ms
=========  ==============  ===================  =====================  =====================

Per condition (reads of 80, zxing / zbar / chain): clean 80/80/80, perspective 79/45/79, glare
80/78/80, blur 74/50/74, moire 74/77/78, dark mode 80/80/80, small 80/64/80.  zxing is the best
single decoder by far and ~15x cheaper; ZBar's p95 at 1280x720 misses the 33 ms frame interval.
The chain recovers four moire frames that zxing misses (+0.7 points), but it pays for ZBar on
every frame zxing does not read, which is every frame of an idle gate: 24 ms of the 33 ms budget.
The benchmark's rule (the cheapest decoder that reads at least as many frames as the best single
decoder, :func:`citypass.bench.decode.recommend`) therefore picks zxing.  Configure ``"chain"`` for a site
where phones with strong screen moire are common and the CPU has nothing else to do.

Example::

    >>> import numpy as np, segno
    >>> from citypass.gate.decoders import DEFAULT_DECODER, make_decoder
    >>> decoder = make_decoder(DEFAULT_DECODER)
    >>> qr = np.asarray(segno.make("CP1:HELLO", error="m", micro=False).matrix, dtype=np.uint8)
    >>> img = np.pad(np.kron(1 - qr, np.ones((6, 6), np.uint8)) * 255, 24, constant_values=255)
    >>> [(d.text, d.decoder) for d in decoder.decode(img)]
    [('CP1:HELLO', 'zxing')]
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
