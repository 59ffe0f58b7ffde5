"""Charts for the staff pages as server-rendered SVG: no script, nothing fetched at run time.

Each chart is an ``<svg>`` with a ``viewBox`` that scales to its box's width, so one drawing
serves a desktop and a phone. Colours come from CSS (``static/ops/dashboard.css``): axes and
labels use the admin's own colour variables, so they follow its light and dark themes, and each
series has a class (``series-0``…) whose colour reads on both. Every point carries a ``<title>``
(its time and value) and each chart a text alternative; ``chart_table`` gives the same numbers as
a table for anyone who would rather read them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH = 420.0
HEIGHT = 190.0
_LEFT, _RIGHT, _TOP, _BOTTOM = 58.0, 10.0, 10.0, 24.0
_X_TICKS = 5
NO_VALUE = "\N{EN DASH}"  # a point or figure without a value
_Y_TICKS = 4


@dataclass(frozen=True)
class Series:
    """One line (or one stack of bars) of a chart: its key in each point, and its legend."""

    key: str
    label: str


@dataclass(frozen=True)
class Point:
    """The values of every series at one time, with the time's label for the axis and tooltip."""

    label: str
    values: dict[str, float | None]


def nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (an axis's top)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-12:
            return step * power
    return 10 * power


def format_value(value: float, unit: str = "") -> str:
    """A short label: 1.2k, 3.4M, 0.0042, 95 ms, 12 %, $0.03."""
    if unit == "$":
        if value == 0:
            return "$0"
        return f"${value:,.2f}" if abs(value) >= 0.1 else f"${value:.4f}".rstrip("0")
    magnitude = abs(value)
    if magnitude >= 1_000_000:
        text = f"{value / 1_000_000:.1f}M"
    elif magnitude >= 10_000:
        text = f"{value / 1000:.0f}k"
    elif magnitude >= 1000:
        text = f"{value / 1000:.1f}k"
    elif magnitude >= 10 or value == int(value):
        text = f"{value:.0f}"
    else:
        text = f"{value:.2g}"
    if unit == "ms" and magnitude >= 1000:
        text = f"{value / 1000:.1f} s"
    elif unit:
        text = f"{text} {unit}"
    return text


def axis_top(value: float) -> float:
    """The top of a y axis over ``value``: four ticks of a nice step (0, 50, 100, 150, 200);
    1 when there is nothing above zero."""
    if value <= 0:
        return 1.0
    return nice_max(value / _Y_TICKS) * _Y_TICKS


def _x(index: int, count: int, *, bars: bool) -> float:
    inner = WIDTH - _LEFT - _RIGHT
    if bars:
        return _LEFT + inner * (index + 0.5) / max(1, count)
    return _LEFT + (inner * index / (count - 1) if count > 1 else inner / 2)


def _y(value: float, top: float) -> float:
    inner = HEIGHT - _TOP - _BOTTOM
    return _TOP + inner * (1 - min(max(value, 0.0), top) / top)


def _frame(points: Sequence[Point], top: float, unit: str, *, bars: bool) -> list[str]:
    parts: list[str] = []
    for tick in range(_Y_TICKS + 1):
        value = top * tick / _Y_TICKS
        y = _y(value, top)
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>',
                _LEFT,
                WIDTH - _RIGHT,
                f"{y:.1f}",
                f"{y:.1f}",
                _LEFT - 4,
                f"{y + 4:.1f}",
                format_value(value, unit),
            )
        )
    count = len(points)
    if count:
        for index in x_ticks(points):
            anchor = "start" if index == 0 and count > 1 else "middle"
            if index == count - 1 and count > 1:
                anchor = "end"
            parts.append(
                format_html(
                    '<text class="axis" x="{}" y="{}" text-anchor="{}">{}</text>',
                    f"{_x(index, count, bars=bars):.1f}",
                    HEIGHT - 6,
                    anchor,
                    points[index].label,
                )
            )
    return parts


# The widest an axis label's character gets (the phone style's 13 px font), and the room between
# two labels: labels are spaced so that they never run into each other.
_CHAR_WIDTH = 7.5
_LABEL_GAP = 14.0


def x_ticks(points: Sequence[Point]) -> list[int]:
    """The indices of the points labelled on the x axis: evenly strided from the first, as many
    as fit side by side at their longest (``_X_TICKS`` at most)."""
    count = len(points)
    if count <= 1:
        return [0] if count else []
    widest = max(len(p.label) for p in points) * _CHAR_WIDTH + _LABEL_GAP
    fit = max(2, min(_X_TICKS, int((WIDTH - _LEFT - _RIGHT) // widest)))
    stride = max(1, math.ceil((count - 1) / (fit - 1)))
    return list(range(0, count, stride))


def _legend(series: Sequence[Series]) -> SafeString:
    return format_html(
        '<ul class="chart-legend">{}</ul>',
        format_html_join(
            "",
            '<li><span class="swatch series-{}" aria-hidden="true"></span>{}</li>',
            ((i, s.label) for i, s in enumerate(series)),
        ),
    )


def _svg(title: str, body: list[str], series: Sequence[Series], empty: bool) -> SafeString:
    note = (
        format_html(
            '<text class="axis empty" x="{}" y="{}" text-anchor="middle">'
            "No data in this range</text>",
            WIDTH / 2,
            HEIGHT / 2,
        )
        if empty
        else ""
    )
    return format_html(
        '<figure class="chart"><svg viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'preserveAspectRatio="xMidYMid meet">{}{}</svg>{}</figure>',
        int(WIDTH),
        int(HEIGHT),
        title,
        mark_safe("".join(body)),  # every part was built by format_html  # noqa: S308
        note,
        _legend(series),
    )


def line_chart(
    title: str, points: Sequence[Point], series: Sequence[Series], *, unit: str = ""
) -> SafeString:
    """Lines, one per series; a gap where a point has no value (None)."""
    values = [p.values.get(s.key) for p in points for s in series]
    present = [v for v in values if v is not None]
    top = axis_top(max(present, default=0.0))
    body = _frame(points, top, unit, bars=False)
    count = len(points)
    for index, one in enumerate(series):
        segments: list[list[tuple[float, float, str]]] = [[]]
        for position, point in enumerate(points):
            value = point.values.get(one.key)
            if value is None:
                segments.append([])
                continue
            segments[-1].append(
                (
                    _x(position, count, bars=False),
                    _y(value, top),
                    f"{point.label}: {format_value(value, unit)}",
                )
            )
        for segment in segments:
            if not segment:
                continue
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in segment)
            body.append(format_html('<polyline class="line series-{}" points="{}"/>', index, path))
            # Dots where there are few points (each carries its tooltip), and always for a point
            # alone between gaps, which a line of one point would not show.
            if count <= 60 or len(segment) == 1:
                name = escape(one.label)
                body.extend(
                    f'<circle class="dot series-{index}" cx="{x:.1f}" cy="{y:.1f}" r="2.2">'
                    f"<title>{name}: {escape(tip)}</title></circle>"
                    for x, y, tip in segment
                )
    return _svg(title, body, series, empty=not present)


def bar_chart(
    title: str, points: Sequence[Point], series: Sequence[Series], *, unit: str = ""
) -> SafeString:
    """Stacked bars: each point's series on top of one another."""
    totals = [sum(p.values.get(s.key) or 0.0 for s in series) for p in points]
    top = axis_top(max(totals, default=0.0))
    body = _frame(points, top, unit, bars=True)
    count = len(points)
    inner = WIDTH - _LEFT - _RIGHT
    width = max(1.0, inner / max(1, count) * 0.8)
    for position, point in enumerate(points):
        base = 0.0
        x = _x(position, count, bars=True) - width / 2
        for index, one in enumerate(series):
            value = point.values.get(one.key) or 0.0
            if value <= 0:
                continue
            y_top, y_base = _y(base + value, top), _y(base, top)
            tip = escape(f"{point.label}, {one.label}: {format_value(value, unit)}")
            # Built as plain text for speed (a 7-day chart has hundreds): every text is escaped.
            body.append(
                f'<rect class="bar series-{index}" x="{x:.1f}" y="{y_top:.1f}" '
                f'width="{width:.1f}" height="{max(0.5, y_base - y_top):.1f}">'
                f"<title>{tip}</title></rect>"
            )
            base += value
    return _svg(title, body, series, empty=not any(totals))


def _cell(value: float | None, unit: str) -> str:
    return NO_VALUE if value is None else format_value(value, unit)


def chart_table(points: Sequence[Point], series: Sequence[Series], *, unit: str = "") -> SafeString:
    """The chart's numbers as a table (inside a ``<details>`` on the page)."""
    head = format_html_join("", '<th scope="col">{}</th>', ((s.label,) for s in series))
    # Plain text for speed (168 rows on a 7-day page): every text is escaped.
    rows = mark_safe(  # noqa: S308
        "".join(
            f'<tr><th scope="row">{escape(point.label)}</th>'
            + "".join(f"<td>{escape(_cell(point.values.get(s.key), unit))}</td>" for s in series)
            + "</tr>"
            for point in points
        )
    )
    return format_html(
        '<table class="chart-data"><thead><tr><th scope="col">Time</th>{}</tr></thead>'
        "<tbody>{}</tbody></table>",
        head,
        rows,
    )
