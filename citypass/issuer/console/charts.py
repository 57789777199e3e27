"""Occupancy curves drawn on the server as SVG: no chart library, nothing to load, readable without script.

    >>> svg = occupancy_svg([(0, 0), (900, 40), (1800, 25)], capacity=50, start=0, end=3600)
    >>> svg.startswith("<svg") and "polyline" in svg and "50" in svg
    True
"""

from __future__ import annotations

from collections.abc import Sequence

from citypass.issuer.console.markup import Safe, tag


def occupancy_svg(points: Sequence[tuple[int, int]], *, capacity: int | None, start: int, end: int,
                  width: int = 640, height: int = 180, utc_offset_minutes: int = 480, label: str = "") -> Safe:
    """Persons inside over ``[start, end)`` as a step line up to the last point (``points``: (time, inside) pairs,
    time-ordered; the last one is "now"), with the
    capacity as a dashed line and the local hours marked every three hours."""
    pad_l, pad_r, pad_t, pad_b = 40, 10, 10, 20
    top = max([capacity or 0, *[p[1] for p in points], 1])
    span = max(1, end - start)

    def x(t: int) -> float:
        return round(pad_l + (t - start) / span * (width - pad_l - pad_r), 1)

    def y(v: int) -> float:
        return round(height - pad_b - v / top * (height - pad_t - pad_b), 1)

    parts = [tag("rect", x=pad_l, y=pad_t, width=width - pad_l - pad_r, height=height - pad_t - pad_b,
                 fill="#fbfcfe", stroke="#d8dde4", void=True)]
    offset = utc_offset_minutes * 60
    first_hour = (start + offset) // 3600 * 3600 - offset
    for t in range(first_hour, end + 1, 3 * 3600):
        if t < start:
            continue
        local = ((t + offset) // 3600) % 24
        parts.append(tag("line", x1=x(t), x2=x(t), y1=pad_t, y2=height - pad_b, stroke="#eef1f5", void=True))
        parts.append(tag("text", f"{local:02d}:00", x=x(t), y=height - 5, text_anchor="middle"))
    parts.append(tag("text", str(top), x=pad_l - 4, y=pad_t + 10, text_anchor="end"))
    parts.append(tag("text", "0", x=pad_l - 4, y=height - pad_b, text_anchor="end"))
    if capacity is not None:
        parts.append(tag("line", x1=pad_l, x2=width - pad_r, y1=y(capacity), y2=y(capacity), stroke="#b3261e",
                         stroke_dasharray="4 3", void=True))
    if points:
        steps: list[str] = []
        previous = 0
        for t, v in points:  # a step line: the count holds until the next quarter's change
            steps += [f"{x(t)},{y(previous)}", f"{x(t)},{y(v)}"]
            previous = v
        parts.append(tag("polyline", points=" ".join(steps), fill="none", stroke="#0b5cad", stroke_width=2, void=True))
    return tag("svg", tag("title", label), *parts, xmlns="http://www.w3.org/2000/svg", width=width, height=height,
               viewBox=f"0 0 {width} {height}", class_="chart", role="img", aria_label=label)
