"""Labels of the gateway's metrics stay few: one per kind of mistake, not per message."""

from __future__ import annotations

from gateway.metrics import rejection_reason


def test_rejection_reasons_are_a_short_bounded_label() -> None:
    assert rejection_reason("data.quantity must be a finite number >= 0") == "quantity"
    assert rejection_reason("event time falls in period 2026-09, which is closed") == (
        "outside-window")
    assert rejection_reason("id is required and must be a non-empty string") == "id"
    assert rejection_reason("time must carry a UTC offset") == "time"
    assert rejection_reason("each event must be a JSON object") == "not-an-object"
    assert rejection_reason("!!! odd") == "other"
