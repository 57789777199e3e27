"""QR symbols for code text, with segno: alphanumeric mode, ECC level M, no error boosting.

ECC M (15 % recovery) is the level the size goals are stated at: it survives a cracked phone screen
or a glare spot, and a higher level would push the dynamic code past version 11.
"""

from __future__ import annotations

from pathlib import Path

import segno

ERROR_LEVEL = "m"


def make(text: str) -> segno.QRCode:
    # boost_error=False keeps the level at M so versions are comparable with the documented goals
    return segno.make(text, error=ERROR_LEVEL, boost_error=False, micro=False)


def version(text: str) -> int:
    """The QR version (1..40) ``text`` needs at ECC M."""
    return int(make(text).version)


def render_png(text: str, out: Path, scale: int = 8, border: int = 4, dark: str = "#000", light: str = "#fff") -> None:
    """Write ``text`` as a PNG of ``scale`` pixels per module with a ``border``-module quiet zone."""
    make(text).save(str(out), kind="png", scale=scale, border=border, dark=dark, light=light)
