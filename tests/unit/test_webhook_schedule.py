"""The retry schedule: jittered delays within ±20 %, dead-letter after the last step."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from processors.webhooks.core.schedule import (
    DEFAULT_SCHEDULE,
    MAX_RETRIES,
    next_attempt_delay,
    parse_schedule,
)
from schemas.topics import WEBHOOK_RETRIES


def test_the_published_schedule_has_one_step_per_retry_topic() -> None:
    assert MAX_RETRIES == 7 == len(WEBHOOK_RETRIES)
    assert [d.total_seconds() for d in DEFAULT_SCHEDULE] == [5, 30, 120, 600, 3600, 21600,
                                                             86400]


@pytest.mark.parametrize("failures", range(1, len(DEFAULT_SCHEDULE) + 1))
def test_jitter_stays_within_twenty_percent_and_uses_the_range(failures: int) -> None:
    rng = random.Random(failures)
    base = DEFAULT_SCHEDULE[failures - 1]
    draws = [next_attempt_delay(failures, DEFAULT_SCHEDULE, rng) for _ in range(5_000)]
    ratios = [d / base for d in draws if d is not None]
    assert len(ratios) == len(draws)
    assert min(ratios) >= 0.8
    assert max(ratios) <= 1.2
    # Full range, not a sliver of it: both ends are reached and the middle is the base.
    assert min(ratios) < 0.81
    assert max(ratios) > 1.19
    assert 0.99 < sum(ratios) / len(ratios) < 1.01


def test_the_delivery_is_dead_lettered_after_the_last_step_fails() -> None:
    rng = random.Random(7)
    assert next_attempt_delay(len(DEFAULT_SCHEDULE), DEFAULT_SCHEDULE, rng) is not None
    assert next_attempt_delay(len(DEFAULT_SCHEDULE) + 1, DEFAULT_SCHEDULE, rng) is None
    assert next_attempt_delay(1, (), rng) is None


def test_a_zero_delay_stays_zero() -> None:
    assert next_attempt_delay(1, (timedelta(0),), random.Random(1)) == timedelta(0)


def test_failures_start_at_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        next_attempt_delay(0, DEFAULT_SCHEDULE, random.Random(1))


def test_a_schedule_longer_than_the_retry_topics_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 7"):
        next_attempt_delay(1, (timedelta(seconds=1),) * 8, random.Random(1))


def test_parse_reads_the_published_schedule() -> None:
    assert parse_schedule("5,30,120,600,3600,21600,86400") == DEFAULT_SCHEDULE


def test_parse_takes_decimals_and_spaces() -> None:
    assert parse_schedule(" 0.5, 2 ,10") == (
        timedelta(milliseconds=500), timedelta(seconds=2), timedelta(seconds=10))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one delay"),
        ("   ", "at least one delay"),
        ("5,,30", r"entry 2 \(''\)"),
        ("5,30,", r"entry 3 \(''\)"),
        ("5s", r"entry 1 \('5s'\)"),
        ("-5", r"entry 1 \('-5'\)"),
        ("1e3", r"entry 1 \('1e3'\)"),
        ("inf", r"entry 1 \('inf'\)"),
        ("nan", r"entry 1 \('nan'\)"),
        (".5", r"entry 1 \('.5'\)"),
        ("1,2,3,4,5,6,7,8", "at most 7 delays"),
        ("5,300000", r"entry 2 \('300000'\) is too long"),
    ],
)
def test_parse_refuses_what_is_not_a_schedule(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(text)
