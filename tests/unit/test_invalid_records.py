"""One policy per topic for records a reader cannot decode, applied by one mechanism."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import REGISTRY

from processors.kafka.invalid import InvalidRecord, invalid_record
from schemas.topics import ADMIN, ALL_TOPICS, INGEST, USAGE


def counted(topic: str, policy: str) -> float:
    value = REGISTRY.get_sample_value("meterly_invalid_records_total",
                                      {"topic": topic, "policy": policy})
    return value or 0.0


def test_every_topic_states_a_policy_and_dead_letters_go_to_a_topic_of_ours() -> None:
    names = {t.name for t in ALL_TOPICS}
    for topic in ALL_TOPICS:
        assert topic.on_invalid in ("dead-letter", "skip", "stop")
        if topic.on_invalid == "dead-letter":
            assert topic.dead_letter in names, topic.name
        else:
            assert topic.dead_letter is None, topic.name
    assert USAGE.on_invalid == "stop"
    assert INGEST.on_invalid == "dead-letter"
    assert ADMIN.on_invalid == "skip"


def test_skip_counts_logs_and_returns(caplog: pytest.LogCaptureFixture) -> None:
    before = counted(ADMIN.name, "skip")
    invalid_record(ADMIN, "admin.v1/0/7", ValueError("unknown admin record kind 'x'"))
    assert counted(ADMIN.name, "skip") == before + 1
    (entry,) = [r for r in caplog.records if r.getMessage() == "unreadable record"]
    assert entry.record == "admin.v1/0/7"  # type: ignore[attr-defined]
    assert entry.policy == "skip"  # type: ignore[attr-defined]


def test_stop_raises_after_counting() -> None:
    before = counted(USAGE.name, "stop")
    with pytest.raises(InvalidRecord, match=r"usage\.v1/3/42: bad"):
        invalid_record(USAGE, "usage.v1/3/42", ValueError("bad"))
    assert counted(USAGE.name, "stop") == before + 1


def test_dead_letter_hands_the_reason_to_the_sender() -> None:
    sent: list[str] = []
    invalid_record(INGEST, "ingest.cloudevents.v1/0/1", ValueError("no specversion"),
                   sent.append)
    assert sent == ["no specversion"]
    with pytest.raises(RuntimeError, match="must pass a dead-letter sender"):
        invalid_record(INGEST, "ingest.cloudevents.v1/0/2", ValueError("x"))
    other = replace(ADMIN, on_invalid="dead-letter", dead_letter="ingest.dead-letter.v1")
    invalid_record(other, "p", ValueError("y"), sent.append)
    assert sent == ["no specversion", "y"]
