"""CloudEvents validation: what is accepted, and the reasons for what is not."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from schemas.cloudevents import EventRejected, to_usage_event

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _event(**overrides: Any) -> dict[str, Any]:
    event = {"specversion": "1.0", "id": "e1", "source": "svc", "type": "api.calls",
             "time": "2026-11-26T11:59:00Z", "data": {"quantity": 2}}
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


def test_a_valid_event_becomes_a_usage_event() -> None:
    usage = to_usage_event(_event(subject="user-1"), NOW)
    assert (usage.id, usage.source, usage.meter, usage.subject) == ("e1", "svc", "api.calls",
                                                                     "user-1")
    assert usage.quantity == Decimal(2)
    assert usage.time_ms == int(datetime(2026, 11, 26, 11, 59, tzinfo=UTC).timestamp() * 1000)


def test_quantity_defaults_to_one_and_keeps_exact_decimals() -> None:
    assert to_usage_event(_event(data=...), NOW).quantity == 1
    parsed = json.loads('{"quantity": 0.1}', parse_float=Decimal)
    assert to_usage_event(_event(data=parsed), NOW).quantity == Decimal("0.1")
    assert to_usage_event(_event(data={"quantity": "12.500"}), NOW).quantity == Decimal("12.500")


def test_missing_time_means_received_now() -> None:
    assert to_usage_event(_event(time=...), NOW).time == NOW


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"specversion": "0.3"}, "specversion"),
    ({"id": ""}, "id is required"),
    ({"id": ...}, "id is required"),
    ({"source": 5}, "source is required"),
    ({"type": "bad meter!"}, "type (the meter)"),
    ({"time": "yesterday"}, "not RFC 3339"),
    ({"time": "2026-11-26T11:00:00"}, "UTC offset"),
    ({"data": {"quantity": -1}}, ">= 0"),
    ({"data": {"quantity": "NaN"}}, "finite"),
    ({"data": {"quantity": True}}, "number or a decimal string"),
    ({"data": {"quantity": "1e20"}}, "below 10^15"),
    ({"data": {"quantity": "0.0000000001"}}, "decimal places"),
    ({"data": [1]}, "JSON object"),
    ({"datacontenttype": "text/plain"}, "datacontenttype"),
])
def test_invalid_events_are_rejected_with_a_reason(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(EventRejected, match=re.escape(reason)):
        to_usage_event(_event(**overrides), NOW)


def test_non_objects_are_rejected() -> None:
    with pytest.raises(EventRejected, match="JSON object"):
        to_usage_event([1, 2], NOW)


def test_kafka_binding_structured_and_binary_modes() -> None:
    from schemas.cloudevents_kafka import record_to_event

    structured = record_to_event(b'{"specversion": "1.0", "id": "x", "data": {"quantity": 0.1}}',
                                 [("content-type", b"application/cloudevents+json")])
    assert structured["data"]["quantity"] == Decimal("0.1")
    binary = record_to_event(b'{"quantity": 2}', [("ce_specversion", b"1.0"),
                                                  ("ce_id", b"y"), ("ce_type", b"m"),
                                                  ("content-type", b"application/json")])
    assert binary == {"specversion": "1.0", "id": "y", "type": "m", "data": {"quantity": 2}}
    with pytest.raises(EventRejected, match="neither structured mode"):
        record_to_event(b"{}", [])
    with pytest.raises(EventRejected, match="not valid JSON"):
        record_to_event(b"{", [("content-type", b"application/cloudevents+json")])
    with pytest.raises(EventRejected, match="must be application/json"):
        record_to_event(b"x", [("ce_specversion", b"1.0"), ("content-type", b"text/plain")])


def _fast(body: str) -> Any:
    import orjson

    from gateway.routes.ingest import exact_quantities

    doc = orjson.loads(body)
    return doc if exact_quantities(doc, body.encode()) else None


@pytest.mark.parametrize(("literal", "quantity"), [
    ("0.1", "0.1"), ("1.5", "1.5"), ("123456789.123456", "123456789.123456"),
    ("0.000000001", "0.000000001"), ("999999999999999", "999999999999999"),
    # The review's literals (exactly-once.md P11): the float path altered these.
    ("100000000.000000001", "100000000.000000001"), ("123456789012.000001", "123456789012.000001"),
    ("1e2", "1E+2"), ("2.50", "2.50"),
])
def test_the_fast_json_path_reads_each_quantity_from_its_literal(literal: str,
                                                                  quantity: str) -> None:
    doc = _fast(f'[{{"id": "a", "data": {{"quantity": {literal}}}}}, {{"data": {{}}}}]')
    assert doc is not None
    event = {**_event(), "data": doc[0]["data"]}
    assert to_usage_event(event, NOW).quantity == Decimal(quantity)


@pytest.mark.parametrize("literal", ["1.0000000000000001", "0.30000000000000001"])
def test_a_literal_with_more_decimals_than_allowed_is_refused_even_if_its_float_is_short(
        literal: str) -> None:
    doc = _fast(f'{{"data": {{"quantity": {literal}}}}}')
    assert doc is not None
    with pytest.raises(EventRejected, match="decimal places"):
        to_usage_event({**_event(), "data": doc["data"]}, NOW)


def test_quantities_not_matched_one_for_one_take_the_exact_parse() -> None:
    # A nested "quantity" the events do not read; an escaped key.
    assert _fast('[{"data": {"quantity": 0.5, "items": [{"quantity": 2.5}]}}]') is None
    assert _fast('[{"data": {"quantit\\u0079": 0.5}}]') is None
    # Integers only: nothing to match.
    assert _fast('[{"data": {"quantity": 3}}]') == [{"data": {"quantity": 3}}]


@pytest.mark.parametrize("time", ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+01:00"])
def test_a_time_a_utc_datetime_cannot_hold_is_rejected_not_raised(time: str) -> None:
    event = {"specversion": "1.0", "id": "x", "source": "s", "type": "t", "time": time}
    with pytest.raises(EventRejected, match="out of range"):
        to_usage_event(event, datetime(2026, 12, 1, tzinfo=UTC))


def test_a_record_nested_too_deeply_is_rejected_not_raised() -> None:
    from schemas.cloudevents_kafka import record_to_event

    deep = b'{"specversion": "1.0", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(EventRejected, match="nested too deeply"):
        record_to_event(deep, [("content-type", b"application/cloudevents+json")])


def test_time_is_stamped_on_receipt_unless_the_deployment_requires_it() -> None:
    event = {"specversion": "1.0", "id": "x", "source": "s", "type": "t"}
    assert to_usage_event(event, NOW).time_ms == int(NOW.timestamp() * 1000)
    with pytest.raises(EventRejected, match="time is required"):
        to_usage_event(event, NOW, require_time=True)
    timed = {**event, "time": "2026-11-26T10:00:00Z"}
    assert to_usage_event(timed, NOW, require_time=True).time_ms == int(
        datetime(2026, 11, 26, 10, tzinfo=UTC).timestamp() * 1000)
