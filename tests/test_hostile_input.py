"""Hostile input never raises and is never allowed: random bytes, random text, and every single-character
mutation (substitution and deletion) of valid static and dynamic codes."""

from __future__ import annotations

import base45
from hypothesis import given, settings
from hypothesis import strategies as st

from citypass.credential import NO_REVOCATIONS, present, verify
from citypass.credential.codes import PREFIX
from tests.helpers.codes import NOW, World

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
WORLD = World()
TRUST = WORLD.trust()
SITE = WORLD.sites["scenic"]
STATIC = WORLD.annual()
DYNAMIC = present(WORLD.annual(holder=True), WORLD.holder, NOW)


def _denied(text: str) -> bool:
    verdict = verify(text, TRUST, NO_REVOCATIONS, SITE, NOW)
    return not verdict.allowed and verdict.reason is not None


def test_the_unmutated_codes_are_allowed() -> None:
    # otherwise the mutation tests below would prove nothing
    assert verify(STATIC, TRUST, NO_REVOCATIONS, SITE, NOW).allowed
    assert verify(DYNAMIC, TRUST, NO_REVOCATIONS, SITE, NOW).allowed


def test_every_single_character_substitution_is_denied() -> None:
    for code in (STATIC, DYNAMIC):
        body = code[len(PREFIX):]
        for i, original in enumerate(body):
            for c in ALPHABET:
                if c != original:
                    mutated = PREFIX + body[:i] + c + body[i + 1:]
                    assert _denied(mutated), (i, c)


def test_every_single_character_deletion_and_prefix_mutation_is_denied() -> None:
    for code in (STATIC, DYNAMIC):
        for i in range(len(code)):
            assert _denied(code[:i] + code[i + 1:]), i
        for i in range(len(PREFIX)):
            for c in ALPHABET:
                if c != code[i]:
                    assert _denied(code[:i] + c + code[i + 1:])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_as_base45_are_denied(data: bytes) -> None:
    assert _denied(PREFIX + base45.b45encode(data).decode())


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=500))
def test_random_text_is_denied(text: str) -> None:
    assert _denied(text)
    assert _denied(PREFIX + text)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_byte_flips_in_the_cbor_are_denied(data: st.DataObject) -> None:
    for code in (STATIC, DYNAMIC):
        raw = bytearray(base45.b45decode(code[len(PREFIX):]))
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
        assert _denied(PREFIX + base45.b45encode(bytes(raw)).decode())
