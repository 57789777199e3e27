"""MQTT topics as NATS subjects, and back: how a clustered NATS engine names what gates publish over MQTT.

nats-server's MQTT gateway turns a topic into a subject level by level: ``/`` → ``.``, ``+`` → ``*``,
``#`` → ``>``, and a ``.`` inside a level → ``//`` (a subject's levels are separated by dots). A QoS 1
PUBLISH from a gate is delivered to NATS subscribers and JetStream streams on that subject, so a stream that
captures ``citypass.v1.gate.*.taps`` holds every gate's tap batches (docs/broker.md, "A clustered engine").
Pure text, used by the broker tier (:mod:`citypass.sync.natsconf`, permissions) and the issuer side
(:mod:`citypass.sync.ingest_queue`, which reads a batch's device id back from its subject).

>>> subject("citypass/v1/gate/+/taps")
'citypass.v1.gate.*.taps'
>>> subject("citypass/v1/site/7/#")
'citypass.v1.site.7.>'
>>> subject("citypass/v1/gate/gate.wl.e1/acks")
'citypass.v1.gate.gate//wl//e1.acks'
>>> topic("citypass.v1.gate.gate//wl//e1.taps")
'citypass/v1/gate/gate.wl.e1/taps'
"""

from __future__ import annotations


def subject(topic_filter: str) -> str:
    """The NATS subject (with wildcards) for an MQTT topic filter of the project's tree."""
    levels = []
    for level in topic_filter.split("/"):
        if not level:
            raise ValueError(f"empty topic level in {topic_filter!r}")
        levels.append({"+": "*", "#": ">"}.get(level, level.replace(".", "//")))
    return ".".join(levels)


def subjects(topic_filter: str) -> list[str]:
    """The subjects a permission needs for a topic filter: an MQTT ``a/#`` also matches ``a`` itself, which the
    engine subscribes as a subject of its own (``a.>`` and ``a``)."""
    converted = subject(topic_filter)
    return [converted, converted[:-2]] if converted.endswith(".>") else [converted]


def topic(concrete: str) -> str:
    """The MQTT topic a message on subject ``concrete`` (no wildcards) was published to: the inverse of
    :func:`subject` for the project's topics (no empty levels)."""
    levels = concrete.split(".")
    if any(not level or level in ("*", ">") for level in levels):
        raise ValueError(f"{concrete!r} is not a concrete subject of an MQTT topic")
    return "/".join(level.replace("//", ".") for level in levels)
