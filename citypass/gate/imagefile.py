"""Reading QR codes from image files (``citypass gate check IMAGE…``) with the gate's own decoders."""

from __future__ import annotations

import time

import cv2

from citypass.gate.decoders import DEFAULT_DECODER, make_decoder


def read_image_file(path: str, decoder_name: str = DEFAULT_DECODER) -> tuple[list[str], str, float]:
    """Decode every QR code in the image at ``path``: (texts, decoder name, decode milliseconds).

    An unreadable or non-image file yields no texts rather than an error: at a gate, a bad frame is
    simply a frame without a code.
    """
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    decoder = make_decoder(decoder_name)
    if image is None:
        return [], decoder.name, 0.0
    started = time.perf_counter()
    found = decoder.decode(image)
    return [d.text for d in found], decoder.name, (time.perf_counter() - started) * 1000
