"""What the lane's screen shows: a decision or the lane's condition, as a state the page lays out.

A state is a small JSON-able dict::

    {"kind": "deny", "reason": "passback", "flags": [], "persons": 0, "at": 1733460000.123, "hold_s": 4.0,
     "arrow": "down", "exit_arrow": "up", "site": "西湖 · West Lake",
     "lines": [{"lang": "zh", "title": "刚刚已入园，请稍后再试", "details": ["请稍后再试"]},
               {"lang": "en", "title": "Entered recently; try again later", "details": ["Please try again later"]}]}

``kind`` is one of ``allow`` (green ✓), ``flag`` (allowed with a flag: amber !), ``deny`` (red ✗), ``idle``
(show your code, an arrow to the scanner), ``out_of_order`` (grey ⊘) and ``fire`` (free passage: ⚠ and an
arrow the way out). ``at`` is when the gate acted (the relay, for an allow), on the gate's wall clock. Every
text comes from the catalogs (:mod:`citypass.credential.catalog`), one block per configured language, so the page
never holds a word of its own — a new language is a catalog and a config line. No credential id, account or
other detail of the visitor's pass is ever put on the screen.

    >>> texts = ScreenTexts(SHIPPED, ("zh", "en"), {"zh": "西湖", "en": "West Lake"})
    >>> state = texts.deny(Reason.PASSBACK)
    >>> state["kind"], [line["title"] for line in state["lines"]], state["lines"][1]["details"]
    ('deny', ['刚刚已入园，请稍后再试', 'Entered recently; try again later'], ['Please try again later'])
    >>> texts.allow(3, ())["lines"][0]
    {'lang': 'zh', 'title': '请通行', 'details': ['3 人通行']}
    >>> texts.lane("idle")["site"]
    '西湖 · West Lake'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from citypass.credential.catalog import SHIPPED, Catalogs
from citypass.credential.reasons import Reason

State = dict[str, Any]
LaneKind = Literal["idle", "out_of_order", "fire"]

#: What a visitor can do about a deny, by reason (anything not listed: ask staff).
ADVICE: dict[Reason, str] = {
    Reason.PRESENTATION_EXPIRED: "advice.refresh",
    Reason.REPLAYED_PRESENTATION: "advice.refresh",
    Reason.KEY_RETIRED: "advice.refresh",
    Reason.DYNAMIC_REQUIRED: "advice.refresh",
    Reason.PRESENTATION_FROM_FUTURE: "advice.phone_clock",
    Reason.UNSUPPORTED_VERSION: "advice.update_app",
    Reason.WRONG_SITE: "advice.other_entrance",
    Reason.MODE_NOT_ALLOWED: "advice.other_entrance",
    Reason.PASSBACK: "advice.later",
    Reason.SITE_FULL: "advice.later",
    Reason.SLOT_NOT_STARTED: "advice.later",
    Reason.DECISION_TIMEOUT: "advice.later",
}


class ScreenTexts:
    """Builds screen states in ``languages`` from ``catalogs``; ``title`` is the site's name per language."""

    def __init__(self, catalogs: Catalogs, languages: Sequence[str], title: Mapping[str, str], *,
                 arrow: str = "down", exit_arrow: str = "up", hold_s: float = 4.0) -> None:
        self.catalogs, self.languages = catalogs, tuple(languages)
        self.arrow, self.exit_arrow, self.hold_s = arrow, exit_arrow, hold_s
        names = [title[lang] for lang in self.languages if title.get(lang)]
        self.site = " · ".join(dict.fromkeys(names))  # in language order, each distinct name once

    def _lines(self, title: str, details: Sequence[tuple[str, dict[str, object]]] = (), *,
               title_is_reason: Reason | None = None) -> list[dict[str, Any]]:
        out = []
        for lang in self.languages:
            head = (self.catalogs.reason_text(title_is_reason, lang) if title_is_reason is not None
                    else self.catalogs.text(title, lang))
            out.append({"lang": lang, "title": head,
                        "details": [self.catalogs.text(key, lang, **values) for key, values in details]})
        return out

    def _state(self, kind: str, lines: list[dict[str, Any]], **extra: Any) -> State:
        return {"kind": kind, "lines": lines, "arrow": self.arrow, "exit_arrow": self.exit_arrow, "site": self.site,
                **extra}

    # -- decisions -----------------------------------------------------------------------------------
    def allow(self, persons: int, flags: Sequence[Reason], at: float | None = None, *,
              benefit: tuple[int, str] | None = None) -> State:
        """Green (amber when flagged): welcome, the number of people for a party, a benefit card's uses left
        (``benefit`` = (uses left, period name)), and any flag's message."""
        details: list[tuple[str, dict[str, object]]] = []
        if persons > 1:
            details.append(("screen.persons", {"n": persons}))
        if benefit is not None:
            details.append((f"benefit.left.{benefit[1]}", {"n": benefit[0]}))
        details += [(f"reason.{flag.value}", {}) for flag in flags]
        kind = "flag" if flags else "allow"
        return self._state(kind, self._lines("screen.flagged" if flags else "screen.welcome", details),
                           reason=None, flags=[f.value for f in flags], persons=persons, at=at, hold_s=self.hold_s)

    def deny(self, reason: Reason, at: float | None = None) -> State:
        """Red: the reason's message and what to do about it."""
        advice = ADVICE.get(reason, "advice.staff")
        return self._state("deny", self._lines("", [(advice, {})], title_is_reason=reason), reason=reason.value,
                           flags=[], persons=0, at=at, hold_s=self.hold_s)

    # -- the lane's condition ------------------------------------------------------------------------
    def lane(self, kind: LaneKind, cause: str | None = None) -> State:
        """``idle``; ``out_of_order`` because of ``cause`` (``camera`` or a reason code); ``fire``."""
        if kind == "fire":
            lines = self._lines("screen.fire", [("screen.exit_this_way", {})])
        elif kind == "out_of_order":
            why = "screen.camera_fault" if cause == "camera" else f"reason.{cause or 'out_of_order'}"
            lines = self._lines("screen.out_of_order", [(why, {}), ("screen.use_other_lane", {})])
        else:
            lines = self._lines("screen.show_code", [("screen.scanner", {})])
        no_connection = {"lines": self._lines("screen.no_connection", [("screen.use_other_lane", {})])}
        return self._state(kind, lines, cause=cause, no_connection=no_connection)


__all__ = ["ADVICE", "SHIPPED", "ScreenTexts", "State"]
