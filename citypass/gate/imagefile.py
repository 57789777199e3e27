"""Reading QR codes from image files (``citypass gate check IMAGE…``) with the gate's own decoders.

A picture is sized from its header before anything decodes it (:func:`citypass.gate.camera.images.image_problem`):
one over ``max_pixels`` is reported as "no code: image too large", never handed to OpenCV, so a crafted file
can neither crash the command nor make it take gigabytes and seconds, and the images after it are still read.
"""

from __future__ import annotations

import time

import cv2

from citypass.gate.camera.images import DEFAULT_MAX_PIXELS, read_picture
from citypass.gate.decoders import DEFAULT_DECODER, make_decoder


def read_image_file(path: str, decoder_name: str = DEFAULT_DECODER, max_pixels: int = DEFAULT_MAX_PIXELS,
                    ) -> tuple[list[str], str, float, str | None]:
    """Decode every QR code in the image at ``path``: (texts, decoder name, decode milliseconds, problem).

    An unreadable, non-image or oversized file yields no texts and says why in ``problem`` rather than
    raising: at a gate, a bad frame is simply a frame without a code.
    """
    decoder = make_decoder(decoder_name)
    image, problem = read_picture(path, cv2.IMREAD_GRAYSCALE, max_pixels)
    if image is None:
        return [], decoder.name, 0.0, problem
    started = time.perf_counter()
    found = decoder.decode(image)
    return [d.text for d in found], decoder.name, (time.perf_counter() - started) * 1000, None
