"""Failed-authentication throttling (gateway/auth_throttle.py)."""

from __future__ import annotations

from gateway.auth_throttle import FailureThrottle


def test_a_subject_is_refused_after_its_burst_of_failures_until_one_refills() -> None:
    t = FailureThrottle(burst=5, per_minute=6)  # one failure back every 10 s
    for _ in range(5):
        assert t.retry_after("1.2.3.4", 100.0) is None
        t.failed("1.2.3.4", 100.0)
    assert t.retry_after("1.2.3.4", 100.0) == 10
    assert t.retry_after("1.2.3.4", 105.0) == 5
    assert t.retry_after("1.2.3.4", 110.0) is None
    t.failed("1.2.3.4", 110.0)
    assert t.retry_after("1.2.3.4", 110.0) == 10


def test_subjects_are_independent_and_successes_cost_nothing() -> None:
    t = FailureThrottle(burst=2, per_minute=1)
    t.failed("a", 0.0)
    t.failed("a", 0.0)
    assert t.retry_after("a", 0.0) == 60
    assert t.retry_after("b", 0.0) is None


def test_a_full_bucket_does_not_grow_past_its_burst() -> None:
    t = FailureThrottle(burst=3, per_minute=60)
    t.failed("a", 0.0)
    for _ in range(3):
        t.failed("a", 1000.0)
    assert t.retry_after("a", 1000.0) == 1


def test_memory_is_bounded_forgetting_the_least_recent() -> None:
    t = FailureThrottle(burst=1, per_minute=1, max_subjects=3)
    for s in "abcd":
        t.failed(s, 0.0)
    assert t.retry_after("a", 0.0) is None  # forgotten
    assert all(t.retry_after(s, 0.0) == 60 for s in "bcd")
