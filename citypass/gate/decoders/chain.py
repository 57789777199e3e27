"""Fallback decoding: try decoders in order, keep the first one that reads something.

No single QR library reads every phone screen: one misses a glare-washed finder pattern that the
other recovers, one cannot see dark mode at all.  ``ChainDecoder`` puts them behind the same
:class:`~citypass.gate.decoders.base.Decoder` interface, so the gate can use a chain exactly as it uses a
single adapter.

Cost model, which ``citypass bench decode`` measures: when the first decoder reads the code, the
chain costs what the first decoder costs; when it does not (a hard frame, or the common case of a
frame with no code at all, i.e. an idle gate), the chain pays for every member.  Put the cheaper and
better reader first.

Example::

    >>> import numpy as np, segno
    >>> from citypass.gate.decoders.chain import ChainDecoder
    >>> from citypass.gate.decoders.zbar import ZbarDecoder
    >>> from citypass.gate.decoders.zxing import ZxingDecoder
    >>> qr = np.asarray(segno.make("CP1:HELLO", error="m", micro=False).matrix, dtype=np.uint8)
    >>> img = np.pad(np.kron(1 - qr, np.ones((6, 6), np.uint8)) * 255, 24, constant_values=255)
    >>> chain = ChainDecoder([ZxingDecoder(), ZbarDecoder()])
    >>> chain.name
    'zxing+zbar'
    >>> [(d.text, d.decoder) for d in chain.decode(img)]
    [('CP1:HELLO', 'zxing')]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from citypass.gate.decoders.base import Decoded, Decoder, to_gray


class ChainDecoder:
    """Try each decoder in turn; return the first non-empty result (``[]`` if none reads).

    The frame is converted to grey once, here, so members do not repeat the conversion.  A member
    that raises despite the contract is treated as having read nothing.
    """

    def __init__(self, decoders: Sequence[Decoder], name: str | None = None) -> None:
        if not decoders:
            raise ValueError("a chain needs at least one decoder")
        self.decoders: tuple[Decoder, ...] = tuple(decoders)
        self.name = name or "+".join(d.name for d in self.decoders)

    def __repr__(self) -> str:
        return f"ChainDecoder({list(self.decoders)!r})"

    def decode(self, frame: np.ndarray) -> list[Decoded]:
        """The result of the first member that reads at least one QR code in *frame*."""
        try:
            gray = to_gray(frame)
        except Exception:
            return []
        if gray is None:
            return []
        for decoder in self.decoders:
            try:
                found = decoder.decode(gray)
            except Exception:  # the gate keeps running whatever one adapter does
                continue
            if found:
                return found
        return []
