"""Retrying Kafka metadata calls through a broker restart or a leader change."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaException

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Errors that mean "ask again, elsewhere": a leader or a group coordinator moved (after a
#: broker restart), which librdkafka does not always flag as retriable.
_MOVED = frozenset({"NOT_LEADER_FOR_PARTITION", "_TRANSPORT", "LEADER_NOT_AVAILABLE",
                    "NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE",
                    "COORDINATOR_LOAD_IN_PROGRESS"})


def with_retries(call: Callable[[], T], what: str, timeout: float = 120.0) -> T:
    """Run ``call``, retrying retriable Kafka errors (no leader or coordinator yet, broker
    down) with back-off until ``timeout``; other errors, and the last one, are raised."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0]
            if not err.retriable() and err.name() not in _MOVED:
                raise
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %s; retrying in %.1fs", what, err.str(), delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
