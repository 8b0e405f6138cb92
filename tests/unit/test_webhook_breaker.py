"""The per-endpoint circuit breaker, driven by a fake clock."""

from __future__ import annotations

import pytest

from processors.webhooks.core.breaker import CircuitBreaker

EP = "wh_1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, cooldown=10.0, max_cooldown=35.0, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.record_failure(EP)


def test_a_new_endpoint_is_closed_and_allowed(breaker: CircuitBreaker) -> None:
    assert breaker.state(EP) == "closed"
    assert breaker.allow(EP)
    assert breaker.allow(EP)


def test_it_opens_after_the_threshold_of_consecutive_failures(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.state(EP) == "closed"
    assert breaker.allow(EP)
    fail(breaker, 1)
    assert breaker.state(EP) == "open"
    assert not breaker.allow(EP)


def test_a_success_resets_the_count_of_consecutive_failures(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.record_success(EP)
    fail(breaker, 2)
    assert breaker.state(EP) == "closed"


def test_endpoints_are_independent(breaker: CircuitBreaker) -> None:
    fail(breaker, 3)
    assert breaker.state("wh_2") == "closed"
    assert breaker.allow("wh_2")


def test_open_refuses_until_the_cooldown_then_allows_exactly_one_trial(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.advance(9.999)
    assert not breaker.allow(EP)
    assert breaker.state(EP) == "open"
    clock.advance(0.001)
    assert breaker.state(EP) == "half_open"
    assert breaker.allow(EP)
    assert not breaker.allow(EP)
    clock.advance(1_000)
    assert not breaker.allow(EP)
    assert breaker.state(EP) == "half_open"


def test_a_successful_trial_closes_the_circuit(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.advance(10)
    assert breaker.allow(EP)
    breaker.record_success(EP)
    assert breaker.state(EP) == "closed"
    assert breaker.allow(EP)
    assert breaker.allow(EP)
    # Reset completely: the full threshold and the first cooldown apply again.
    fail(breaker, 2)
    assert breaker.state(EP) == "closed"
    fail(breaker, 1)
    clock.advance(10)
    assert breaker.state(EP) == "half_open"


def test_a_failed_trial_reopens_with_the_cooldown_doubled_up_to_the_maximum(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    for cooldown in (10, 20, 35, 35):
        clock.advance(cooldown - 0.5)
        assert not breaker.allow(EP), cooldown
        clock.advance(0.5)
        assert breaker.allow(EP), cooldown
        breaker.record_failure(EP)
        assert breaker.state(EP) == "open"
    clock.advance(35)
    assert breaker.allow(EP)
    breaker.record_success(EP)
    fail(breaker, 3)
    clock.advance(10)
    assert breaker.allow(EP)


def test_late_failures_while_open_do_not_extend_the_cooldown(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.advance(5)
    fail(breaker, 10)  # deliveries that were already in flight when it opened
    assert breaker.state(EP) == "open"
    clock.advance(5)
    assert breaker.allow(EP)


def test_a_trial_is_not_handed_out_before_allow_is_asked(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.advance(10)
    breaker.record_failure(EP)  # no trial out yet: old news, not a trial's outcome
    assert breaker.allow(EP)


def test_the_default_settings(clock: FakeClock) -> None:
    breaker = CircuitBreaker(clock=clock)
    fail(breaker, 4)
    assert breaker.state(EP) == "closed"
    fail(breaker, 1)
    assert breaker.state(EP) == "open"
    clock.advance(30)
    assert breaker.allow(EP)


@pytest.mark.parametrize(
    ("threshold", "cooldown", "max_cooldown"), [(0, 30.0, 600.0), (5, 0.0, 600.0),
                                                (5, 30.0, 10.0)]
)
def test_nonsense_settings_are_refused(threshold: int, cooldown: float,
                                       max_cooldown: float) -> None:
    with pytest.raises(ValueError, match="must"):
        CircuitBreaker(threshold, cooldown, max_cooldown)
