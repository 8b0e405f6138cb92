"""Per-key token buckets (pure; the clock is injected).

Each key may burst up to one second's worth of requests and refills at its rate. With
several gateway processes behind a load balancer, each enforces ``rate / processes``
(``METERLY_GATEWAY_PROCESSES``), so the fleet as a whole enforces the configured rate
without a shared store on the request path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    #: Seconds until a request would be allowed again (0 when allowed now).
    retry_after: int
    reset: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, processes: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._processes = max(1, processes)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, rate_per_second: int) -> Decision:
        rate = max(rate_per_second / self._processes, 1e-9)
        capacity = max(1.0, rate)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        reset = math.ceil((capacity - bucket.tokens) / rate) if bucket.tokens < capacity else 0
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Decision(True, rate_per_second, int(bucket.tokens * self._processes), 0,
                            reset)
        wait = math.ceil((1.0 - bucket.tokens) / rate)
        return Decision(False, rate_per_second, 0, max(1, wait), max(1, reset))
