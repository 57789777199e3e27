"""The MQTT topic tree shared by gates, the issuer and the broker's ACL: one place, versioned.

Every topic starts with :data:`PREFIX` (``citypass/v1``). A change of payload encoding or meaning that old
gates cannot read gets a new prefix (``citypass/v2``), so both versions run side by side on one broker
during a fleet upgrade. Device ids and site numbers become single topic levels; device ids are the
certificate CNs that :func:`citypass.sync.ca.check_common_name` allows, so they never contain ``/ + # $``.

==============================  ===========  =====  ======  =============================================
topic                           direction    QoS    retain  what
==============================  ===========  =====  ======  =============================================
``gate/{device}/taps``          gate → issuer  1    no      batches of taps from the gate's outbox
``gate/{device}/requests``      gate → issuer  1    no      "send me a snapshot / deltas from seq N"
``gate/{device}/status``        gate → all     1    yes     online status; the Last Will sets it offline
``gate/{device}/acks``          issuer → gate  1    no      tap ids the issuer has stored
``gate/{device}/ledger``        issuer → gate  1    no      catch-up deltas answering that gate's request
``site/{site}/ledger``          issuer → site  1    no      signed ledger deltas for one site's gates
``site/{site}/lanes/{device}``  gate → site    1    no      a lane's admissions for its siblings (signed)
``site/{site}/central``         site broker    1    yes     the site's bridge to the central broker: 1 up, 0 down
``all/ledger``                  issuer → all   1    no      signed deltas for every gate (keys, revocations)
``issuer/time``                 issuer → all   0    no      issuer-timestamped ticks for clock offset
==============================  ===========  =====  ======  =============================================

>>> gate_taps("gate-wl-e1")
'citypass/v1/gate/gate-wl-e1/taps'
>>> site_ledger(7)
'citypass/v1/site/7/ledger'
>>> shared("ingest", ALL_TAPS)
'$share/ingest/citypass/v1/gate/+/taps'
>>> parse_gate_topic("citypass/v1/gate/gate-wl-e1/taps")
('gate-wl-e1', 'taps')
>>> site_lanes(7, "gate-wl-e1")
'citypass/v1/site/7/lanes/gate-wl-e1'
>>> parse_lane_topic("citypass/v1/site/7/lanes/gate-wl-e1")
(7, 'gate-wl-e1')

The broker's ACL is generated from :data:`GATE_UP` and :data:`GATE_DOWN` (see :mod:`citypass.sync.broker`): add a
per-gate topic here and every gate may use it after the next ``citypass broker init`` or device change.
A stale retained tick would skew a gate's clock estimate, so ``issuer/time`` is never retained.
A gate may read everything under its own site (``site/{site}/#``), ``all/#`` and ``issuer/#``, so new
downstream topics there need no ACL change either.
"""

from __future__ import annotations

import re

from citypass.errors import InvalidInput

PREFIX = "citypass/v1"

# Per-gate topic leaves, by direction. The ACL grants a gate write on GATE_UP and read on GATE_DOWN of
# its own subtree only, so a gate can neither impersonate another gate nor read another gate's acks.
GATE_UP = ("taps", "requests", "status")
GATE_DOWN = ("acks", "ledger")

TAPS, REQUESTS, STATUS, ACKS, LEDGER = "taps", "requests", "status", "acks", "ledger"
LANES = "lanes"

ALL_LEDGER = f"{PREFIX}/all/ledger"
ISSUER_TIME = f"{PREFIX}/issuer/time"
ALL_TAPS = f"{PREFIX}/gate/+/taps"
ALL_REQUESTS = f"{PREFIX}/gate/+/requests"
ALL_STATUS = f"{PREFIX}/gate/+/status"
EVERYTHING = f"{PREFIX}/#"

# Status payloads are documented in docs/mqtt.md; these two words are what the Last Will and the first
# publish after connecting put there, so presence works even before the status encoding is decided.
ONLINE, OFFLINE = b"online", b"offline"

_LEVEL = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
_GATE_TOPIC = re.compile(rf"{re.escape(PREFIX)}/gate/([^/]+)/([^/]+)")
_LANE_TOPIC = re.compile(rf"{re.escape(PREFIX)}/site/(0|[1-9][0-9]{{0,3}})/{LANES}/([^/]+)")


def _level(value: str) -> str:
    # A device id with "/" or "+" would escape its subtree: refuse it here too, not only in the CA.
    if not _LEVEL.fullmatch(value):
        raise InvalidInput(f"{value!r} is not a safe topic level (a-z 0-9 . _ -)")
    return value


def gate_topic(device: str, leaf: str) -> str:
    """``citypass/v1/gate/{device}/{leaf}`` for one of :data:`GATE_UP` or :data:`GATE_DOWN`."""
    if leaf not in GATE_UP and leaf not in GATE_DOWN:
        raise InvalidInput(f"unknown gate topic {leaf!r}")
    return f"{PREFIX}/gate/{_level(device)}/{leaf}"


def gate_taps(device: str) -> str:
    """Where ``device`` publishes batches of taps (QoS 1)."""
    return gate_topic(device, TAPS)


def gate_requests(device: str) -> str:
    """Where ``device`` asks the issuer for a snapshot or the deltas it missed (QoS 1)."""
    return gate_topic(device, REQUESTS)


def gate_status(device: str) -> str:
    """``device``'s retained status; also its Last Will topic, so a dead connection reads ``offline``."""
    return gate_topic(device, STATUS)


def gate_acks(device: str) -> str:
    """Where the issuer acknowledges ``device``'s taps by id (QoS 1, to that device only)."""
    return gate_topic(device, ACKS)


def gate_ledger(device: str) -> str:
    """Catch-up ledger deltas for ``device`` alone, answering its request (QoS 1, issuer → that gate)."""
    return gate_topic(device, LEDGER)


def site_ledger(site: int) -> str:
    """Ledger deltas for one site's gates. Sites are the issuer's site numbers (1, 2, …)."""
    if isinstance(site, bool) or not isinstance(site, int) or site < 0:
        raise InvalidInput(f"site must be a non-negative integer, not {site!r}")
    return f"{PREFIX}/site/{site}/ledger"


def site_subtree(site: int) -> str:
    """The filter a gate at ``site`` may read: ``citypass/v1/site/{site}/#``."""
    return site_ledger(site).rsplit("/", 1)[0] + "/#"


def site_lanes(site: int, device: str) -> str:
    """Where ``device``, a lane of ``site``, tells its sibling lanes of its admissions (QoS 1; the ACL lets
    only that device, enrolled at that site, publish here)."""
    return f"{site_subtree(site)[:-1]}{LANES}/{_level(device)}"


def site_central(site: int) -> str:
    """Where a site broker's bridge says whether the central broker is reachable (retained ``1``/``0``)."""
    return f"{site_subtree(site)[:-1]}central"


def parse_lane_topic(topic: str) -> tuple[int, str] | None:
    """``(site, device)`` for a lanes topic, else ``None``."""
    match = _LANE_TOPIC.fullmatch(topic)
    if not match or not _LEVEL.fullmatch(match.group(2)):
        return None
    return int(match.group(1)), match.group(2)


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: the broker hands each message to one member of ``group``.

    Several issuer ingest workers subscribe to ``shared("ingest", ALL_TAPS)`` and split the taps between
    them. On Mosquitto 2.0 with an ACL file, subscriptions are not checked, so any client that *knows* the
    group name can join the group and have messages it may not read dropped: use a group name that is a
    deployment secret (see docs/broker.md).
    """
    return f"$share/{_level(group)}/{topic_filter}"


def parse_gate_topic(topic: str) -> tuple[str, str] | None:
    """``(device, leaf)`` for a per-gate topic under this prefix, else ``None`` (the issuer's router)."""
    match = _GATE_TOPIC.fullmatch(topic)
    if not match or not _LEVEL.fullmatch(match.group(1)):
        return None
    return match.group(1), match.group(2)
