"""Token buckets: burst, refill, per-key isolation, and the fleet-wide share."""

from __future__ import annotations

from gateway.rate_limit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refusal_then_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    results = [limiter.take("k", 5).allowed for _ in range(7)]
    assert results == [True] * 5 + [False] * 2
    refused = limiter.take("k", 5)
    assert refused.retry_after == 1
    assert refused.headers()["RateLimit-Remaining"] == "0"
    clock.now += 0.4  # 2 tokens come back
    assert [limiter.take("k", 5).allowed for _ in range(3)] == [True, True, False]


def test_keys_do_not_share_buckets() -> None:
    limiter = RateLimiter(clock=Clock())
    assert all(limiter.take("a", 2).allowed for _ in range(2))
    assert not limiter.take("a", 2).allowed
    assert limiter.take("b", 2).allowed


def test_each_of_several_processes_takes_its_share() -> None:
    limiter = RateLimiter(processes=4, clock=Clock())
    allowed = sum(limiter.take("k", 100).allowed for _ in range(200))
    assert allowed == 25
