"""Sections of ``docs/benchmarks.md`` that ``citypass bench all`` does not generate, kept when it rewrites the file.

Some measurements take too long or too much of the machine for ``bench all`` (``bench broker`` at 10,000 gates,
``bench city`` at ten million taps, ``bench cluster``): they are run on their own and their figures written into
the report by hand, each under its own ``## `` heading. Rewriting the report must not drop them. The rule is
plain: a section of the old report whose heading the new report lacks is carried over, placed after the
section that preceded it in the old report (or at the end, where that one is gone too), in the old order.
"""

from __future__ import annotations

import re

_HEADING = re.compile(r"^## .*$", re.MULTILINE)


def sections(markdown: str) -> tuple[str, list[tuple[str, str]]]:
    """The text before the first ``## `` heading, and each ``(heading, whole section text)`` after it."""
    starts = [m.start() for m in _HEADING.finditer(markdown)]
    if not starts:
        return markdown, []
    parts = [markdown[a:b] for a, b in zip(starts, [*starts[1:], len(markdown)], strict=True)]
    return markdown[:starts[0]], [(part.splitlines()[0].strip(), part) for part in parts]


def keep_hand_sections(old: str, new: str) -> str:
    """``new`` with every section of ``old`` whose heading ``new`` lacks, each after its old predecessor."""
    head, generated = sections(new)
    _, previous = sections(old)
    have = {heading for heading, _ in generated}
    out = [list(item) for item in generated]
    after: str | None = None
    for heading, text in previous:
        if heading not in have:
            at = next((i for i, (h, _) in enumerate(out) if h == after), len(out) - 1)
            body = text if text.endswith("\n\n") else text.rstrip("\n") + "\n\n"
            out.insert(at + 1, [heading, body])
            have.add(heading)
        after = heading
    if out:
        out[-1][1] = out[-1][1].rstrip("\n") + "\n"
    return head + "".join(text for _, text in out)
