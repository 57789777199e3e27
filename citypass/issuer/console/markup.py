"""Building HTML safely: every value is escaped unless it is already :class:`Safe` (made by these functions).

    >>> str(tag("td", "<b>", class_="num"))
    '<td class="num">&lt;b&gt;</td>'
    >>> str(tag("input", name="q", value='"x"', required=True, void=True))
    '<input name="q" value="&quot;x&quot;" required/>'
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

Child = Any  # str, int, Safe, None, or an iterable of those


class Safe(str):
    """Text that is already HTML (built by :func:`tag`, :func:`join` or :func:`raw`)."""


def raw(text: str) -> Safe:
    """Trusted HTML written in this package (never data)."""
    return Safe(text)


def esc(value: Child) -> Safe:
    if value is None or value is False:
        return Safe("")
    if isinstance(value, Safe):
        return value
    if isinstance(value, str | int | float):
        return Safe(escape(str(value), quote=True))
    if isinstance(value, Iterable):
        return Safe("".join(esc(v) for v in value))
    return Safe(escape(str(value), quote=True))


def join(*children: Child) -> Safe:
    return esc(children)


def tag(element: str, *children: Child, void: bool = False, **attrs: Any) -> Safe:
    """``<element attrs>children</element>``; attribute names: a trailing ``_`` is dropped, ``_`` inside becomes ``-``;
    True is a bare attribute, None/False leaves it out. ``void``: no children, written self-closed."""
    parts = [element]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        parts.append(attr if value is True else f'{attr}="{escape(str(value), quote=True)}"')
    if void:  # self-closed: inside inline SVG (foreign content) an unclosed <rect> would swallow what follows
        return Safe(f"<{' '.join(parts)}/>")
    return Safe(f"<{' '.join(parts)}>{esc(children)}</{element}>")


def table(headers: Iterable[Child], rows: Iterable[Iterable[Child]], **attrs: Any) -> Safe:
    """A table; a header or cell that is a (value, class) tuple gets that class."""
    def cell(kind: str, value: Child) -> Safe:
        if isinstance(value, tuple):
            return tag(kind, value[0], class_=value[1])
        return tag(kind, value)

    head = tag("thead", tag("tr", [cell("th", h) for h in headers]))
    body = tag("tbody", [tag("tr", [cell("td", c) for c in row]) for row in rows])
    return tag("table", head, body, **attrs)
