"""A circuit breaker per webhook endpoint, so one dead receiver does not eat the dispatcher.

closed: deliveries go out; ``failure_threshold`` consecutive failures open the circuit.
open: nothing goes out until the cooldown has passed.
half_open: exactly one trial delivery goes out; its success closes the circuit, its failure
opens it again with the cooldown doubled (up to ``max_cooldown``).

Outcomes carry no token, so the breaker cannot tell a trial's outcome from that of a
delivery sent before the circuit opened. It resolves this conservatively: while a trial is
out, any outcome is taken as the trial's; while open without a trial, failures change
nothing (they are old news) and a success closes the circuit (the receiver is answering).

A caller must record the outcome of every allowed delivery, including cancelled or crashed
ones (as failures): a half-open trial whose outcome never arrives keeps the endpoint shut.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass
class _Endpoint:
    failures: int = 0
    #: Monotonic time the circuit opened; None while closed.
    opened_at: float | None = None
    cooldown: float = 0.0
    trial_out: bool = False


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        max_cooldown: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown <= 0 or max_cooldown < cooldown:
            raise ValueError("cooldowns must satisfy 0 < cooldown <= max_cooldown")
        self._threshold = failure_threshold
        self._cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._clock = clock
        # Only endpoints with recent failures have an entry, so healthy ones cost nothing.
        self._endpoints: dict[str, _Endpoint] = {}

    def state(self, endpoint_id: str) -> State:
        entry = self._endpoints.get(endpoint_id)
        if entry is None or entry.opened_at is None:
            return "closed"
        if entry.trial_out or self._cooled_down(entry):
            return "half_open"
        return "open"

    def allow(self, endpoint_id: str) -> bool:
        """May a delivery to this endpoint go out now? A True while half-open is the trial."""
        entry = self._endpoints.get(endpoint_id)
        if entry is None or entry.opened_at is None:
            return True
        if entry.trial_out or not self._cooled_down(entry):
            return False
        entry.trial_out = True
        return True

    def retry_in(self, endpoint_id: str) -> float:
        """Seconds until ``allow`` may say yes again (0 when it would now)."""
        entry = self._endpoints.get(endpoint_id)
        if entry is None or entry.opened_at is None:
            return 0.0
        left = entry.opened_at + entry.cooldown - self._clock()
        if entry.trial_out:
            # The trial's outcome decides; look again shortly.
            return max(left, 1.0)
        return max(left, 0.0)

    def record_success(self, endpoint_id: str) -> None:
        self._endpoints.pop(endpoint_id, None)

    def record_failure(self, endpoint_id: str) -> None:
        entry = self._endpoints.setdefault(endpoint_id, _Endpoint())
        if entry.opened_at is None:
            entry.failures += 1
            if entry.failures >= self._threshold:
                self._open(entry, self._cooldown)
        elif entry.trial_out:
            self._open(entry, min(entry.cooldown * 2, self._max_cooldown))

    def _open(self, entry: _Endpoint, cooldown: float) -> None:
        entry.opened_at = self._clock()
        entry.cooldown = cooldown
        entry.trial_out = False

    def _cooled_down(self, entry: _Endpoint) -> bool:
        assert entry.opened_at is not None
        return self._clock() - entry.opened_at >= entry.cooldown
