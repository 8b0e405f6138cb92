"""Usage thresholds (pure): which shares of the included quantity a counter reached."""

from __future__ import annotations

from decimal import Decimal

import pytest

from processors.usage.core.thresholds import crossed, message_id, parse_thresholds

D = Decimal


def test_parse_thresholds_sorts_dedupes_and_bounds() -> None:
    assert parse_thresholds("100, 80,80,") == (80, 100)
    assert parse_thresholds("") == ()
    for bad in ("0", "1001", "-5"):
        with pytest.raises(ValueError, match="between 1 and 1000"):
            parse_thresholds(bad)


@pytest.mark.parametrize(("quantity", "included", "reached"), [
    (D(79), D(100), []),
    (D(80), D(100), [80]),            # reaching a threshold counts, on the dot
    (D("99.99"), D(100), [80]),
    (D(100), D(100), [80, 100]),
    (D(250), D(100), [80, 100, 200]),
    (D(5), D(0), []),                 # nothing included: no share to pass
    (D("0.8"), D(1), [80]),
])
def test_crossed(quantity: Decimal, included: Decimal, reached: list[int]) -> None:
    assert crossed(quantity, included, (80, 100, 200)) == reached


def test_a_notice_has_one_id_per_tenant_period_meter_and_percent() -> None:
    first = message_id("t1", "2026-12", "api.calls", 80)
    assert first == message_id("t1", "2026-12", "api.calls", 80)
    assert first.startswith("msg_thr_")
    others = {message_id("t2", "2026-12", "api.calls", 80),
              message_id("t1", "2027-01", "api.calls", 80),
              message_id("t1", "2026-12", "tokens", 80),
              message_id("t1", "2026-12", "api.calls", 100)}
    assert first not in others
    assert len(others) == 4
