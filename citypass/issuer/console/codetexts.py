"""How the console names the codes a tap carries — its product, its decision and its reason — to an operator.

Taps, logs and the API speak in codes (``annual``, ``allow``, ``expired``); an operator reads names in the page's
language, with the code kept on hover for searching logs by it. There is one vocabulary, not a second one:

* **products** by the phone wallet's names for them (``wallet.product.<name>`` in
  :data:`citypass.credential.visitortexts.TEXTS`: 景点年卡 / Annual scenic pass), one per
  :class:`citypass.credential.claims.Product`;
* **reasons** by the gate's messages (:data:`citypass.credential.reasons.MESSAGES`, what the lane's screen,
  ``citypass gate check`` and ``citypass city summary`` say); a code the table does not hold (a gate newer than
  this issuer) is shown as the code itself;
* **decisions**, **gate directions** and **tap kinds** by the console's own words (``decision.*``, ``direction.*``,
  ``kind.*`` in :mod:`.texts`: 通过 / 拒绝, 入口 / 出口, 入园 / 出园 / 进站 / 出站 / 乘车).

Server-rendered tables use :func:`code_cell`; the live page gets the whole table once, built into the page
(:func:`codes_json`), while the taps it streams keep carrying codes.

    >>> product_name(1, "zh"), product_name("annual", "en"), product_name(99, "zh"), product_name(None, "zh")
    ('景点年卡', 'Annual scenic pass', '99', '—')
    >>> decision_name("allow", "zh"), decision_name("deny", "en"), decision_name("maybe", "zh")
    ('通过', 'Denied', 'maybe')
    >>> direction_name("exit", "zh"), kind_name("tap_in", "zh"), kind_name("tap_out", "en"), kind_name(None, "zh")
    ('出口', '进站', 'Tap-out', '')
    >>> reason_text("expired", "zh"), reason_text("expired", "en"), reason_text("from_the_future", "zh")
    ('凭证已过期', 'Pass expired', 'from_the_future')
    >>> str(code_cell("expired", reason_text("expired", "zh")))
    '<span class="code" title="expired" data-code="expired">凭证已过期</span>'
"""

from __future__ import annotations

import json

from citypass.credential.claims import Product
from citypass.credential.reasons import MESSAGES
from citypass.credential.visitortexts import TEXTS as VISITOR_TEXTS
from citypass.issuer import tap_records
from citypass.issuer.console.markup import Safe, tag
from citypass.issuer.console.texts import text

#: Product number: its code (``Product`` member's name in lower case, what the live stream and a pass's details carry).
PRODUCT_CODES: dict[int, str] = {int(p): p.name.lower() for p in Product}
#: The decisions, gate directions and tap kinds a tap can have (``citypass.issuer.tap_records``).
DECISIONS, DIRECTIONS, KINDS = tap_records.DECISIONS, tap_records.DIRECTIONS, tap_records.KINDS
_REASONS: dict[str, tuple[str, str]] = {reason.value: pair for reason, pair in MESSAGES.items()}


def _pick(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "zh" else pair[1]


def product_code(product: int | str | None) -> str:
    """A product's code from its number (``1`` → ``annual``); a code is returned as it is, an unknown number as
    its digits, none as ``""``."""
    if product is None:
        return ""
    if isinstance(product, int):
        return PRODUCT_CODES.get(product, str(product))
    return product


def product_name(product: int | str | None, lang: str) -> str:
    """A product (its number or its code) as the wallet names it in ``lang``; the code for one it has no name for
    (``—``: none)."""
    code = product_code(product)
    if not code:
        return "—"
    names = VISITOR_TEXTS.get(f"wallet.product.{code}")
    return _pick(names, lang) if names else code


def decision_name(decision: str, lang: str) -> str:
    """``allow`` / ``deny`` in ``lang``; anything else as it is."""
    return _named("decision", decision, DECISIONS, lang)


def direction_name(direction: str | None, lang: str) -> str:
    """A gate's direction (``entry`` / ``exit``) in ``lang``; anything else as it is (none — a gate registered for
    both ways: ``""``)."""
    return _named("direction", direction or "", DIRECTIONS, lang)


def kind_name(kind: str | None, lang: str) -> str:
    """A tap's kind (``entry``, ``exit``, ``tap_in``, ``tap_out``, ``tap``) in ``lang``; anything else as it is
    (none: ``""``)."""
    return _named("kind", kind or "", KINDS, lang)


def _named(family: str, code: str, known: tuple[str, ...], lang: str) -> str:
    return text(f"{family}.{code}", lang) if code in known else code


def reason_text(reason: str | None, lang: str) -> str:
    """A reason code as the gate's message says it in ``lang``; a code without a message as the code (none: ``""``)."""
    if not reason:
        return ""
    pair = _REASONS.get(reason)
    return _pick(pair, lang) if pair else reason


def code_cell(code: str | None, name: str) -> Safe | str:
    """A table cell's content: ``name``, with the raw ``code`` on hover (``title``) and in ``data-code``."""
    if not code:
        return name
    return tag("span", name, class_="code", title=code, data_code=code)


def codes_json(lang: str) -> str:
    """The live page's table of names in ``lang`` (its ``data-codes``), by the codes taps carry::

        {"product": {"annual": "景点年卡", …}, "decision": {"allow": "通过", …}, "reason": {"expired": "凭证已过期", …}}
    """
    table = {"product": {code: product_name(code, lang) for code in PRODUCT_CODES.values()},
             "decision": {d: decision_name(d, lang) for d in DECISIONS},
             "reason": {code: _pick(pair, lang) for code, pair in _REASONS.items()}}
    return json.dumps(table, ensure_ascii=False, separators=(",", ":"))


__all__ = ["DECISIONS", "DIRECTIONS", "KINDS", "PRODUCT_CODES", "code_cell", "codes_json", "decision_name",
           "direction_name", "kind_name", "product_code", "product_name", "reason_text"]
