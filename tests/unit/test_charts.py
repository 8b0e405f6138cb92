"""The console's per-day bars: one per day, scaled to the busiest day, zeros included."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from gateway.charts import daily_bars, days_of


def test_one_bar_per_day_scaled_to_the_busiest() -> None:
    days = days_of(date(2026, 11, 1), date(2026, 12, 1))
    assert len(days) == 30
    svg = daily_bars([(date(2026, 11, 3), Decimal(50)), (date(2026, 11, 4), Decimal(100))], days)
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', svg)]
    assert len(heights) == 30
    assert heights[3] == max(heights)
    assert heights[2] == heights[3] / 2
    assert heights[0] == 0
    assert "2026-11-04: 100" in svg


def test_no_usage_draws_empty_bars_without_dividing_by_zero() -> None:
    svg = daily_bars([], days_of(date(2026, 2, 1), date(2026, 3, 1)))
    assert svg.count("<rect") == 28

