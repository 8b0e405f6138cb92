"""When a failed webhook delivery is tried again, and when it is given up on.

Attempt 1 is immediate. After the n-th failed attempt the next one waits ``schedule[n-1]``
(jittered); when the attempt after the last step fails too, the delivery goes to the dead
letter topic. A schedule of k steps therefore means 1 + k attempts in all.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from datetime import timedelta

from schemas.topics import WEBHOOK_RETRIES

#: Each step waits in its own retry topic (see ``schemas.topics``), so there can be no more
#: steps than topics.
MAX_RETRIES: int = len(WEBHOOK_RETRIES)

#: The published schedule: 5 s, 30 s, 2 min, 10 min, 1 h, 6 h, 24 h.
DEFAULT_SCHEDULE: tuple[timedelta, ...] = tuple(
    timedelta(seconds=s) for s in (5, 30, 120, 600, 3600, 21600, 86400)
)

#: Every delay is drawn uniformly from [base * (1 - JITTER), base * (1 + JITTER)], so the
#: retries of deliveries that failed together (an endpoint outage) spread out instead of
#: arriving at the receiver as one burst.
JITTER = 0.2

# A delivery waits in a retry topic until due; Kafka must not delete it before then.
_LONGEST_WAIT_S: float = min(
    (topic.retention_ms / 1000 for topic in WEBHOOK_RETRIES if topic.retention_ms is not None),
    default=math.inf,
)

_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def next_attempt_delay(
    failures: int, schedule: Sequence[timedelta], rng: random.Random
) -> timedelta | None:
    """How long to wait after the ``failures``-th failed attempt; None: dead-letter it."""
    if failures < 1:
        raise ValueError(f"failures counts failed attempts, so it is at least 1, not {failures}")
    if len(schedule) > MAX_RETRIES:
        raise ValueError(f"a retry schedule has at most {MAX_RETRIES} steps")
    if failures > len(schedule):
        return None
    base = schedule[failures - 1].total_seconds()
    seconds = base * (1.0 + rng.uniform(-JITTER, JITTER))
    return timedelta(seconds=max(0.0, seconds))


def parse_schedule(text: str) -> tuple[timedelta, ...]:
    """A schedule from comma-separated seconds, e.g. ``"5,30,120,600,3600,21600,86400"``."""
    entries = [entry.strip() for entry in text.split(",")]
    if entries == [""]:
        raise ValueError("a retry schedule needs at least one delay in seconds, e.g. '5,30,120'")
    if len(entries) > MAX_RETRIES:
        raise ValueError(
            f"a retry schedule has at most {MAX_RETRIES} delays (one per retry topic), "
            f"not {len(entries)}: {text!r}"
        )
    delays: list[timedelta] = []
    for position, entry in enumerate(entries, start=1):
        # float() alone would also take "inf", "nan", "1e3" and "-5".
        if not _SECONDS.fullmatch(entry):
            raise ValueError(
                f"retry schedule entry {position} ({entry!r}) is not a number of seconds "
                f"such as 30 or 0.5: {text!r}"
            )
        seconds = float(entry)
        if seconds * (1.0 + JITTER) >= _LONGEST_WAIT_S:
            raise ValueError(
                f"retry schedule entry {position} ({entry!r}) is too long: with jitter it "
                f"must stay under the retry topics' retention of {_LONGEST_WAIT_S:.0f} s, "
                "or deliveries would be deleted before they are due"
            )
        delays.append(timedelta(seconds=seconds))
    return tuple(delays)
