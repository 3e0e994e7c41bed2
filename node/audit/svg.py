"""Small SVG charts drawn by hand: no plotting library, no script, no network.

`line_chart` draws one or more series over shared x labels; `stacked_bars` draws one bar per
x label split into named stacks. Both return one ``<svg>`` element as a string, sized by its
``viewBox`` so it scales with the page, with a ``<title>`` on every point and bar segment (the
browser shows it on hover) and a legend. Text is escaped; numbers are formatted by the caller's
`Format`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

Format = Callable[[float], str]

WIDTH = 640
PLOT_HEIGHT = 200  # the plot area
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 36
AXIS_SPACE = 44  # under the plot: x labels and the x axis title
LEGEND_ROW = 16  # height of one legend row
CHAR_WIDTH = 7  # approximate width of one legend character at the legend's font size
TICKS = 5
# A colour-blind-friendly palette (Okabe-Ito), repeated when there are more series.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)


@dataclass(frozen=True)
class Series:
    """One named line or stack: a value (or None: no data) per x label."""

    name: str
    values: Sequence[float | None]
    color: str = ""  # "" picks the palette colour of the series' position
    dashed: bool = False  # lines only


def _color(series: Series, position: int) -> str:
    return series.color or PALETTE[position % len(PALETTE)]


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def _legend_layout(entries: Sequence[tuple[str, str]]) -> list[tuple[float, int, str, str]]:
    """(x, row, name, colour) of each legend entry, wrapping rows at the chart's width."""
    placed = []
    x, row = float(MARGIN_LEFT), 0
    for name, color in entries:
        width = 24 + CHAR_WIDTH * len(name)
        if x + width > WIDTH - MARGIN_RIGHT and x > MARGIN_LEFT:
            x, row = float(MARGIN_LEFT), row + 1
        placed.append((x, row, name, color))
        x += width
    return placed


class _Frame:
    """The plot area, its axes, its legend and the mapping from data to pixels."""

    def __init__(
        self,
        title: str,
        labels: Sequence[str],
        y_max: float,
        fmt: Format,
        legend: Sequence[tuple[str, str]],
    ) -> None:
        self.labels = list(labels)
        self.y_max = y_max
        self.fmt = fmt
        self.left, self.top = MARGIN_LEFT, MARGIN_TOP
        self.width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
        self.height = PLOT_HEIGHT
        self.legend = _legend_layout(legend)
        rows = 1 + max((row for _, row, _, _ in self.legend), default=0)
        total = MARGIN_TOP + PLOT_HEIGHT + AXIS_SPACE + rows * LEGEND_ROW + 4
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {total}" '
            f'role="img" aria-label="{escape(title)}" class="chart">',
            f"<title>{escape(title)}</title>",
            f'<text x="{WIDTH / 2:.1f}" y="20" text-anchor="middle" class="chart-title">'
            f"{escape(title)}</text>",
        ]

    def slot(self, i: int) -> float:
        """The x pixel at the centre of label `i`."""
        step = self.width / max(len(self.labels), 1)
        return self.left + step * (i + 0.5)

    @property
    def slot_width(self) -> float:
        return self.width / max(len(self.labels), 1)

    def y(self, value: float) -> float:
        """The y pixel of a value."""
        return self.top + self.height * (1 - value / self.y_max)

    def axes(self, x_title: str) -> None:
        """Grid lines, y ticks, x labels and the x axis title."""
        for k in range(TICKS + 1):
            value = self.y_max * k / TICKS
            y = self.y(value)
            self.parts.append(
                f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.left + self.width}" '
                f'y2="{y:.1f}" class="grid"/>'
            )
            self.parts.append(
                f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                f"{escape(self.fmt(value))}</text>"
            )
        bottom = self.top + self.height
        for i, label in enumerate(self.labels):
            self.parts.append(
                f'<text x="{self.slot(i):.1f}" y="{bottom + 16}" text-anchor="middle" '
                f'class="tick">{escape(label)}</text>'
            )
        self.parts.append(
            f'<line x1="{self.left}" y1="{bottom}" x2="{self.left + self.width}" y2="{bottom}" '
            f'class="axis"/>'
        )
        self.parts.append(
            f'<text x="{self.left + self.width / 2:.1f}" y="{bottom + 32}" '
            f'text-anchor="middle" class="axis-title">{escape(x_title)}</text>'
        )

    def svg(self) -> str:
        """The finished element: the parts drawn so far, then the legend."""
        legend = []
        first = self.top + self.height + AXIS_SPACE + LEGEND_ROW - 4
        for x, row, name, color in self.legend:
            y = first + row * LEGEND_ROW
            legend.append(f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" fill="{color}"/>')
            legend.append(f'<text x="{x + 14:.1f}" y="{y}" class="legend">{escape(name)}</text>')
        return "\n".join([*self.parts, *legend, "</svg>"])


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    x_title: str,
    fmt: Format,
    y_max: float | None = None,
) -> str:
    """Lines over shared x labels, with a dot and a hover title at every value.

    Parameters
    ----------
    title
        The chart's title (also its accessible name).
    labels
        One label per x position.
    series
        The lines; a None value leaves a gap.
    x_title
        The x axis title.
    fmt
        Formats y values for ticks and hover titles.
    y_max
        The top of the y axis; the data's maximum rounded up when None.

    Returns
    -------
    str
        One ``<svg>`` element.
    """
    top = max((v for s in series for v in s.values if v is not None), default=0.0)
    legend = [(s.name, _color(s, i)) for i, s in enumerate(series)]
    frame = _Frame(title, labels, y_max if y_max is not None else _nice_max(top), fmt, legend)
    frame.axes(x_title)
    for position, s in enumerate(series):
        color = _color(s, position)
        points = [
            (frame.slot(i), frame.y(v), v, labels[i])
            for i, v in enumerate(s.values)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            dash = ' stroke-dasharray="6 4"' if s.dashed else ""
            frame.parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>'
            )
        for x, y, value, label in points:
            frame.parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}">'
                f"<title>{escape(f'{s.name}, {label}: {fmt(value)}')}</title></circle>"
            )
    return frame.svg()


def stacked_bars(
    title: str,
    labels: Sequence[str],
    stacks: Sequence[Series],
    *,
    x_title: str,
    fmt: Format,
) -> str:
    """One bar per x label, split into the stacks' values (None and 0 draw nothing).

    Parameters
    ----------
    title
        The chart's title (also its accessible name).
    labels
        One label per bar.
    stacks
        The segments, bottom first; values must be non-negative.
    x_title
        The x axis title.
    fmt
        Formats values for ticks and hover titles.

    Returns
    -------
    str
        One ``<svg>`` element.
    """
    totals = [sum((s.values[i] or 0.0) for s in stacks) for i in range(len(labels))]
    legend = [(s.name, _color(s, i)) for i, s in enumerate(stacks)]
    frame = _Frame(title, labels, _nice_max(max(totals, default=0.0)), fmt, legend)
    frame.axes(x_title)
    bar = frame.slot_width * 0.6
    for i, label in enumerate(labels):
        base = 0.0
        for position, s in enumerate(stacks):
            value = s.values[i] or 0.0
            if value <= 0:
                continue
            y_top, y_bottom = frame.y(base + value), frame.y(base)
            frame.parts.append(
                f'<rect x="{frame.slot(i) - bar / 2:.1f}" y="{y_top:.1f}" width="{bar:.1f}" '
                f'height="{max(y_bottom - y_top, 0.5):.1f}" fill="{_color(s, position)}">'
                f"<title>{escape(f'{s.name}, {label}: {fmt(value)}')}</title></rect>"
            )
            base += value
    return frame.svg()
