"""Defined meters counted end to end (issue 15, step 3 of docs/meters.md): events accepted
over HTTP and over Kafka ingest are read with the meter versions in force when they are
accepted, refused with the reason when a meter cannot read them, and counted into groups by
every aggregation, through the counter and the Cassandra mirror to ``GET /v1/usage``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Producer

from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_bounds, period_of
from schemas.topics import INGEST
from tests.stack import CORE_WORKERS, Stack, start_stack, wait_until

pytestmark = pytest.mark.integration
METERS: list[dict[str, Any]] = [
    {"key": "llm_tokens", "event_type": "llm.tokens", "aggregation": "sum",
     "group_by": {"model": "model"}, "value_dimension": "token_type",
     "values": {"input": {"path": "input", "minus": ["cached_input"]},
                "cached_input": {"path": "cached_input", "default": "0"},
                "output": "output"}},
    {"key": "llm_calls", "event_type": "llm.tokens", "aggregation": "count",
     "group_by": {"model": "model"}},
    {"key": "llm_users", "event_type": "llm.tokens", "aggregation": "unique_count",
     "value": "user"},
    {"key": "llm_peak_output", "event_type": "llm.tokens", "aggregation": "max",
     "value": "output"},
    {"key": "llm_last_output", "event_type": "llm.tokens", "aggregation": "latest",
     "value": "output"},
]


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("meter-counting"), gateways=1,
                     workers=CORE_WORKERS) as running:
        with running.client() as admin:
            for meter in METERS:
                made = admin.post("/v1/admin/meters", json=meter)
                assert made.status_code == 201, made.text
        yield running


def _event(event_id: str, second: int, **data: Any) -> dict[str, Any]:
    """An event ``second`` seconds after an anchor a minute ago, inside the current period
    whatever the day (the anchor is never before the period's start)."""
    now = datetime.now(UTC)
    start, _end = period_bounds(period_of(now))
    moment = max(now - timedelta(seconds=60), start) + timedelta(seconds=second)
    return {"specversion": "1.0", "id": event_id, "source": "llm-gateway",
            "type": "llm.tokens", "time": moment.isoformat().replace("+00:00", "Z"),
            "data": data}


def _groups(stack: Stack, key: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], str]:
    with stack.client(token=key) as client:
        body = client.get("/v1/usage").json()
    return {(g["meter"], tuple(sorted(g["group"].items()))): g["value"]
            for g in body["groups"]}


def test_llm_events_count_into_every_aggregation_by_group(stack: Stack) -> None:
    tenant, key = stack.new_tenant("LLM Co")
    http = [
        _event("r1", 1, model="large", input=1200, cached_input=800, output=350, user="u1"),
        _event("r2", 2, model="small", input=100, output=20, user="u2"),
        _event("r3", 3, model="large", input=10, output=500, user="u1"),
        _event("r1", 1, model="large", input=1200, cached_input=800, output=350, user="u1"),
        # Refused with the reason: nothing of them counts anywhere.
        _event("bad1", 4, model="large", output=1, user="u3"),  # input missing
        _event("bad2", 4, model="large", input=5, cached_input=9, output=1, user="u3"),
        _event("bad3", 4, input=5, output=1, user="u3"),  # no model
    ]
    with stack.client(token=key) as client:
        answer = client.post("/v1/events", json=http)
    assert answer.status_code == 200, answer.text
    receipts = [(r["status"], r["reason"]) for r in answer.json()["receipts"]]
    assert [s for s, _ in receipts] == ["accepted"] * 3 + ["duplicate"] + ["rejected"] * 3
    assert "data.input (llm_tokens) is missing" in (receipts[4][1] or "")
    assert "negative once cached_input" in (receipts[5][1] or "")
    assert "dimension model" in (receipts[6][1] or "")
    # The same meters read records from the Kafka ingest topic.
    bootstrap = stack.settings.kafka_bootstrap
    assert bootstrap
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True})
    producer.produce(INGEST.full_name(stack.settings.topic_prefix), json.dumps(
        _event("k1", 5, model="small", input=50, cached_input=10, output=7,
               user="u9")).encode(), key=tenant.encode(),
        headers=[("content-type", b"application/cloudevents+json"),
                 ("meterly-key", key.encode())])
    assert producer.flush(30) == 0

    large_in = ("llm_tokens", (("model", "large"), ("token_type", "input")))
    expected = {
        large_in: "410",  # 1200 - 800, then 10 (cached_input defaults to 0)
        ("llm_tokens", (("model", "large"), ("token_type", "cached_input"))): "800",
        ("llm_tokens", (("model", "large"), ("token_type", "output"))): "850",
        ("llm_tokens", (("model", "small"), ("token_type", "input"))): "140",
        ("llm_tokens", (("model", "small"), ("token_type", "cached_input"))): "10",
        ("llm_tokens", (("model", "small"), ("token_type", "output"))): "27",
        ("llm_calls", (("model", "large"),)): "2",
        ("llm_calls", (("model", "small"),)): "2",
        ("llm_users", ()): "3",
        ("llm_peak_output", ()): "500",
        ("llm_last_output", ()): "7",  # k1 has the latest event time (second 5)
    }
    wait_until("every group counted", lambda: _groups(stack, key) == expected, timeout=90)
    with stack.client(token=key) as client:
        # The type's own count and sum of quantity go on (what plans price by type).
        assert client.get("/v1/usage").json()["meters"] == [
            {"meter": "llm.tokens", "count": 4, "sum": "4"}]


def test_a_new_version_reads_new_events_and_leaves_counted_ones(stack: Stack) -> None:
    """On a meter of its own (its type read by nothing else), so no other test sees it."""
    _tenant, key = stack.new_tenant("Versioned")
    calls = {"key": "job_calls", "event_type": "jobs.ran", "aggregation": "count",
             "group_by": {"model": "model"}}

    def job(event_id: str, **data: Any) -> dict[str, Any]:
        return {**_event(event_id, 1, **data), "type": "jobs.ran"}

    with stack.client() as admin:
        assert admin.post("/v1/admin/meters", json=calls).json()["version"] == 1
    with stack.client(token=key) as client:
        assert client.post("/v1/events", json=[job("v1", model="m")]).json()["accepted"] == 1
    wait_until("version 1 counted", lambda: _groups(stack, key).get(
        ("job_calls", (("model", "m"),))) == "1", timeout=60)
    with stack.client() as admin:
        # Version 2 groups by region as well.
        made = admin.post("/v1/admin/meters", json={
            **calls, "group_by": {"model": "model", "region": "region"}})
        assert made.json()["version"] == 2, made.text
    with stack.client(token=key) as client:
        assert client.post("/v1/events", json=[job("v2", model="m", region="eu")]
                           ).json()["accepted"] == 1
        refused = client.post("/v1/events", json=[job("v3", model="m")]).json()
        assert "dimension region" in refused["receipts"][0]["reason"]
    wait_until("version 2 counted beside version 1", lambda: (
        (g := _groups(stack, key)).get(("job_calls", (("model", "m"),))) == "1"
        and g.get(("job_calls", (("model", "m"), ("region", "eu")))) == "1"), timeout=60)
