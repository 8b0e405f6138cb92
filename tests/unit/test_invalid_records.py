"""No record stops a reader: every topic names where its unreadable records go, and one
mechanism logs, counts and hands each to the reader's dead-letter sender."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from processors.kafka.invalid import DeadLetters, invalid_record
from schemas.topics import (
    ADMIN,
    ALL_TOPICS,
    INGEST,
    INGEST_DEAD_LETTER,
    INVALID_RECORDS,
    USAGE,
)


def counted(topic: str) -> float:
    value = REGISTRY.get_sample_value("meterly_invalid_records_total", {"topic": topic})
    return value or 0.0


def test_every_topic_dead_letters_to_a_topic_of_ours() -> None:
    names = {t.name for t in ALL_TOPICS}
    for topic in ALL_TOPICS:
        assert topic.dead_letter in names, topic.name
    assert INGEST.dead_letter == INGEST_DEAD_LETTER.name
    assert {t.dead_letter for t in ALL_TOPICS if t is not INGEST} == {INVALID_RECORDS.name}


def test_an_unreadable_record_is_counted_logged_and_handed_on(
        caplog: pytest.LogCaptureFixture) -> None:
    before = counted(USAGE.name)
    sent: list[str] = []
    invalid_record(USAGE, "usage.v1/3/42", ValueError("not a usage record"), sent.append)
    assert sent == ["not a usage record"]
    assert counted(USAGE.name) == before + 1
    (entry,) = [r for r in caplog.records if r.getMessage() == "unreadable record dead-lettered"]
    assert entry.record == "usage.v1/3/42"  # type: ignore[attr-defined]
    assert entry.dead_letter == INVALID_RECORDS.name  # type: ignore[attr-defined]


class _Recorder:
    """A producer that keeps what it is given."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, Any, Any, list[tuple[str, Any]]]] = []

    def produce(self, topic: str, value: Any, key: Any = None,
                headers: list[tuple[str, Any]] | None = None) -> None:
        self.produced.append((topic, value, key, headers or []))


class _Msg:
    def __init__(self) -> None:
        self._headers = [("ce_id", b"e-1")]

    def topic(self) -> str:
        return "p.admin.v1"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7

    def key(self) -> bytes:
        return b"tenant:x"

    def value(self) -> bytes:
        return b"\xffnot json"

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


def test_the_record_goes_unchanged_with_reason_place_and_reader() -> None:
    letters = DeadLetters("127.0.0.1:9", "p.", "admin-follower")
    producer = _Recorder()
    invalid_record(ADMIN, "p.admin.v1/0/7", ValueError("unknown admin record kind 'x'"),
                   letters.of(_Msg(), producer))  # type: ignore[arg-type]
    ((topic, value, key, headers),) = producer.produced
    assert topic == "p.invalid-records.v1"
    assert (value, key) == (b"\xffnot json", b"tenant:x")
    assert headers == [("ce_id", b"e-1"),
                       ("meterly-error", b"unknown admin record kind 'x'"),
                       ("meterly-source", b"p.admin.v1/0/7"),
                       ("meterly-reader", b"admin-follower")]
    assert letters.sent == 1
