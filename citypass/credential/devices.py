"""The one rule for device ids: what a gate may be called, everywhere it is named.

A device id is the gate id in the gate's config, the Common Name of its broker certificate (which Mosquitto
turns into its MQTT username and client id), a level of its MQTT topics, a line of the broker's ACL file and
the id in the issuer's device registry. So it must be safe in every one of those places: 1 to 64 of
``a-z 0-9 . _ -``, starting and ending with a letter or digit — no ``/ + #`` (MQTT wildcards and
separators), no ``%`` (ACL patterns), no spaces, no leading ``$`` (broker-internal topics), no capitals
(two ids that differ only in case would be one user to some tools and two to others).

>>> check_device_id("gate-wl-e1")
'gate-wl-e1'
>>> check_device_id("Gate WL/1")
Traceback (most recent call last):
...
citypass.errors.InvalidInput: unsafe device id 'Gate WL/1': use 1-64 of a-z 0-9 . _ - (starting and ending alphanumeric)

The ids a device puts in what it uploads — an outbox event's id and its tap's id (UUIDv7 text from a gate) —
follow one rule too, whichever transport carries them (``POST /v1/taps`` or a tap batch over MQTT): 1 to 64
of ``A-Z a-z 0-9 _ . : -``, starting with a letter or digit. No NUL, no quotes, no spaces: they are stored,
logged and shown to operators.

>>> check_outbox_id("0190f1c2-7a3b-7c4d-8e5f-60718293a4b5")
'0190f1c2-7a3b-7c4d-8e5f-60718293a4b5'
>>> check_outbox_id('e1" OR 1')
Traceback (most recent call last):
...
citypass.errors.InvalidInput: event id 'e1" OR 1' is not 1-64 of A-Z a-z 0-9 _ . : - (starting with a letter or digit)
"""

from __future__ import annotations

import re
from typing import Final

from citypass.errors import InvalidInput

#: The pattern as a regular expression string (for pydantic ``Field(pattern=…)`` and OpenAPI).
DEVICE_ID_PATTERN: Final = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
DEVICE_ID_RE: Final = re.compile(DEVICE_ID_PATTERN)


#: Event and tap ids in uploads (see the module docstring).
OUTBOX_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
OUTBOX_ID_RE: Final = re.compile(OUTBOX_ID_PATTERN)


def check_device_id(device_id: str, what: str = "device id") -> str:
    """Return ``device_id`` if it follows the rule above, else raise :class:`~citypass.errors.InvalidInput`."""
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise InvalidInput(f"unsafe {what} {device_id!r}: use 1-64 of a-z 0-9 . _ - (starting and ending alphanumeric)")
    return device_id


def check_outbox_id(value: str, what: str = "event id") -> str:
    """Return ``value`` if it is a valid event or tap id (see the module docstring), else raise
    :class:`~citypass.errors.InvalidInput`."""
    if not isinstance(value, str) or not OUTBOX_ID_RE.fullmatch(value):
        raise InvalidInput(f"{what} {value!r} is not 1-64 of A-Z a-z 0-9 _ . : - (starting with a letter or digit)")
    return value
