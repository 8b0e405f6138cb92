"""Inline SVG bar charts for the console: one bar per day of the period. Pure, no I/O.

Server-rendered SVG needs no JavaScript library and nothing from a CDN (the console must
work without internet access).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from html import escape

WIDTH, HEIGHT, LEFT, BOTTOM = 720, 140, 44, 20


def days_of(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def _label(value: Decimal) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.1f}k"
    return f"{value.normalize():f}"


def daily_bars(points: Sequence[tuple[date, Decimal]], days: Sequence[date]) -> str:
    """An SVG with one bar per day in ``days`` (missing days are zero)."""
    by_day = dict(points)
    values = [max(Decimal(0), by_day.get(d, Decimal(0))) for d in days]
    top = max(values, default=Decimal(0)) or Decimal(1)
    step = (WIDTH - LEFT) / max(len(days), 1)
    plot = HEIGHT - BOTTOM
    bars = []
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        height = float(value / top) * (plot - 8)
        x = LEFT + i * step
        bars.append(
            f'<rect x="{x + 1:.1f}" y="{plot - height:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{height:.1f}" fill="#2f5bd3"><title>{day.isoformat()}: '
            f'{escape(_label(value))}</title></rect>')
        if day.day in (1, 8, 15, 22, 29):
            bars.append(f'<text x="{x:.1f}" y="{HEIGHT - 5}">{day.day}</text>')
    axis = (f'<text x="0" y="12">{escape(_label(top))}</text><text x="0" y="{plot}">0</text>'
            f'<line x1="{LEFT}" y1="{plot}" x2="{WIDTH}" y2="{plot}" stroke="#c9ced8"/>')
    return (f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
            f'aria-label="usage per day">{axis}{"".join(bars)}</svg>')
