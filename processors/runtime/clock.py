"""Where billing reads "now": the system clock, or a file tests and demos write to.

Period close depends on time; tests must move time forward without waiting. Every billing
decision takes ``now`` from a ``Clock``; production uses the system clock, and
``METERLY_CLOCK_FILE`` points a worker at a file holding an RFC 3339 time instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from schemas.rfc3339 import parse_time

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def file_clock(path: Path) -> Clock:
    def now() -> datetime:
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return system_clock()
        return parse_time(text)

    return now


def clock_from(path: Path | None) -> Clock:
    return system_clock if path is None else file_clock(path)
