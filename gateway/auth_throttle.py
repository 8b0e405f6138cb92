"""Throttling failed authentication (pure; the clock is passed in).

Each subject (a client address, an API key's display prefix, the console sign-in of an
address) has a bucket of ``burst`` failures that refills at ``per_minute`` a minute. Every
failed authentication takes one; while a subject's bucket is empty, its requests are
refused with 429 and ``Retry-After`` before their credentials are looked at, right or
wrong, so guessing goes no faster than the refill. Successes take nothing. At most
``max_subjects`` subjects are remembered, the least recently failed forgotten first.
"""

from __future__ import annotations

import math
from collections import OrderedDict


class FailureThrottle:
    def __init__(self, burst: int, per_minute: float, max_subjects: int = 50_000) -> None:
        self.burst, self.rate = burst, per_minute / 60.0
        self.max_subjects = max_subjects
        #: subject -> (failures left, when that was computed)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _left(self, subject: str, now: float) -> float:
        bucket = self._buckets.get(subject)
        if bucket is None:
            return float(self.burst)
        left, at = bucket
        return min(float(self.burst), left + max(0.0, now - at) * self.rate)

    def retry_after(self, subject: str, now: float) -> int | None:
        """Whole seconds until ``subject`` may try again, or None if it may now."""
        left = self._left(subject, now)
        if left >= 1.0:
            return None
        return max(1, math.ceil((1.0 - left) / self.rate))

    def failed(self, subject: str, now: float) -> None:
        self._buckets[subject] = (self._left(subject, now) - 1.0, now)
        self._buckets.move_to_end(subject)
        while len(self._buckets) > self.max_subjects:
            self._buckets.popitem(last=False)
