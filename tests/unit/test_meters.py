"""Meter definitions and what an event contributes (processors.usage.core.meters): paths,
filters, groups, one event feeding several groups, and every refusal a receipt reason."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from processors.usage.core.meters import (
    MISSING,
    Contribution,
    contributions,
    lookup,
    meter_from_spec,
    parse_path,
    path_text,
)
from schemas.cloudevents import EventRejected

LLM = {"key": "llm_tokens", "event_type": "llm.tokens", "aggregation": "sum",
       "group_by": {"model": "model"},
       "values": {"input": {"path": "input", "minus": ["cached_input"]},
                  "cached_input": {"path": "cached_input", "default": "0"},
                  "output": "output"},
       "value_dimension": "token_type"}


def test_paths_read_members_and_indexes_and_say_missing() -> None:
    data = {"usage": {"tokens": [{"n": 3}]}, "flag": False}
    assert lookup(data, parse_path("usage.tokens[0].n")) == 3
    assert lookup(data, parse_path("flag")) is False
    assert lookup(data, parse_path("usage.tokens[1].n")) is MISSING
    assert lookup(data, parse_path("usage.nothing")) is MISSING
    assert lookup([], parse_path("a")) is MISSING
    assert path_text(parse_path("usage.tokens[0].n")) == "usage.tokens[0].n"


def test_one_llm_event_feeds_one_group_per_token_type() -> None:
    meter = meter_from_spec(LLM, 1)
    assert meter.dimensions == ("model", "token_type")
    got = contributions([meter], {"model": "large", "input": 1200, "cached_input": 800,
                                  "output": 350})
    assert got == [
        Contribution("llm_tokens", 1, ("large", "input"), Decimal(400)),
        Contribution("llm_tokens", 1, ("large", "cached_input"), Decimal(800)),
        Contribution("llm_tokens", 1, ("large", "output"), Decimal(350)),
    ]
    # A declared default fills an absent value; nothing else does.
    got = contributions([meter], {"model": "small", "input": 10, "output": 2})
    assert [c.value for c in got] == [Decimal(10), Decimal(0), Decimal(2)]


@pytest.mark.parametrize(("data", "reason"), [
    ({"input": 1, "output": 1}, "dimension model (data.model) is missing"),
    ({"model": "m", "output": 1}, "data.input (llm_tokens) is missing"),
    ({"model": "m", "input": "lots", "output": 1}, "is not a decimal number"),
    ({"model": "m", "input": -1, "output": 1}, "must be a finite number >= 0"),
    ({"model": "m", "input": 5, "cached_input": 8, "output": 1}, "negative once cached_input"),
    ({"model": {"name": "m"}, "input": 1, "output": 1}, "must be a string, an integer"),
    ({"model": 1.5, "input": 1, "output": 1}, "must be a string, an integer"),
    ({"model": "m" * 201, "input": 1, "output": 1}, "longer than 200"),
])
def test_a_value_or_dimension_that_cannot_be_read_rejects_the_event(
        data: dict[str, Any], reason: str) -> None:
    with pytest.raises(EventRejected, match=re.escape(reason)):
        contributions([meter_from_spec(LLM, 1)], data)


def test_filters_choose_the_events_a_meter_counts() -> None:
    meter = meter_from_spec({"key": "eu_calls", "event_type": "calls",
                             "aggregation": "count", "filters": {"region": ["eu", "uk"],
                                                                 "paid": True}}, 2)
    assert contributions([meter], {"region": "eu", "paid": True}) == [
        Contribution("eu_calls", 2, (), Decimal(1))]
    assert contributions([meter], {"region": "us", "paid": True}) == []
    assert contributions([meter], {"region": "eu", "paid": False}) == []
    assert contributions([meter], {"paid": True}) == []  # a filter on a missing path fails


def test_max_latest_and_unique_count_read_their_value() -> None:
    peak = meter_from_spec({"key": "peak", "event_type": "gauge", "aggregation": "max",
                            "value": "level"}, 1)
    users = meter_from_spec({"key": "users", "event_type": "gauge",
                             "aggregation": "unique_count", "value": "user"}, 1)
    got = contributions([peak, users], {"level": "12.5", "user": 42})
    assert got == [Contribution("peak", 1, (), Decimal("12.5")),
                   Contribution("users", 1, (), "42")]
    # A unique value keeps its JSON type: the string "42" is another user than 42.
    assert contributions([users], {"user": "42"})[0].value == '"42"'
    with pytest.raises(EventRejected, match="must be a string, an integer or a boolean"):
        contributions([users], {"user": [1]})


@pytest.mark.parametrize(("change", "reason"), [
    ({"key": "Bad Key"}, "key may hold"),
    ({"aggregation": "avg"}, "aggregation must be one of"),
    ({"value": "x"}, "value or values, not both"),
    ({"value_dimension": None}, "values needs value_dimension"),
    ({"values": {"input": {"path": "input", "minus": ["nope"]}}}, "not other values"),
    ({"group_by": {"token_type": "t"}}, "both a group_by dimension and the value_dimension"),
    ({"group_by": {"Model": "model"}}, "dimension name 'Model'"),
    ({"group_by": {"model": "a..b"}}, "is not name"),
    ({"event_type": ""}, "event_type is required"),
    ({"max_groups": 0}, "max_groups must be"),
    ({"filters": {"region": [1.5]}}, "must be a string, an integer"),
    ({"aggregation": "count"}, "count reads no value"),
])
def test_a_definition_that_cannot_work_is_refused_with_the_reason(
        change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        meter_from_spec({**LLM, **change}, 1)


def test_a_single_value_meter_defaults_to_quantity() -> None:
    meter = meter_from_spec({"key": "calls", "event_type": "calls", "aggregation": "sum"}, 1)
    assert contributions([meter], {"quantity": 3}) == [
        Contribution("calls", 1, (), Decimal(3))]
    with pytest.raises(EventRejected, match=r"data\.quantity"):
        contributions([meter], {})
