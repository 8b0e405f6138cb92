"""Billing periods: UTC calendar months, their grace, and how long an event id is remembered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_GRACE = timedelta(hours=1)
#: Ids are remembered at least this long after the event, and past its period's close.
DEDUPE_MIN_WINDOW = timedelta(days=35)
MAX_FUTURE_SKEW = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def period_of(moment: datetime) -> str:
    """The period (``YYYY-MM``, UTC) that ``moment`` falls in."""
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"


def period_of_ms(time_ms: int) -> str:
    return period_of(datetime.fromtimestamp(time_ms / 1000, UTC))


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) of ``period`` in UTC. Raises ValueError for anything but ``YYYY-MM``."""
    if len(period) != 7 or period[4] != "-":
        raise ValueError(f"period must look like 2026-11, got {period!r}")
    year, month = int(period[:4]), int(period[5:])
    if not 1 <= month <= 12 or year < 1970:
        raise ValueError(f"period must look like 2026-11, got {period!r}")
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def previous_period(period: str) -> str:
    start, _ = period_bounds(period)
    return period_of(start - timedelta(microseconds=1))


def open_periods(now: datetime, grace: timedelta = DEFAULT_GRACE) -> tuple[str, ...]:
    """Periods that still take usage at ``now``: the current one, and the last one in its grace."""
    current = period_of(now)
    start, _ = period_bounds(current)
    if now - start < grace:
        return (previous_period(current), current)
    return (current,)


def rejection_for_time(event_time: datetime, now: datetime,
                       grace: timedelta = DEFAULT_GRACE) -> str | None:
    """Why an event at ``event_time`` cannot be accepted at ``now``, or None if it can."""
    if event_time - now > MAX_FUTURE_SKEW:
        return "event time is more than 5 minutes in the future"
    if period_of(event_time) not in open_periods(now, grace):
        return (f"event time falls in period {period_of(event_time)}, which is closed "
                f"(open: {', '.join(open_periods(now, grace))})")
    return None


@dataclass(frozen=True)
class AcceptanceWindow:
    """The event times accepted at one moment: from the start of the oldest open period
    up to five minutes ahead. Computed once per request, checked per event in O(1)."""

    now: datetime
    grace: timedelta
    earliest_ms: int
    latest_ms: int

    @classmethod
    def at(cls, now: datetime, grace: timedelta = DEFAULT_GRACE) -> AcceptanceWindow:
        oldest, _ = period_bounds(open_periods(now, grace)[0])
        return cls(now, grace, int(oldest.timestamp() * 1000),
                   int((now + MAX_FUTURE_SKEW).timestamp() * 1000))

    def rejection(self, time_ms: int) -> str | None:
        if self.earliest_ms <= time_ms <= self.latest_ms:
            return None
        return rejection_for_time(datetime.fromtimestamp(time_ms / 1000, UTC), self.now,
                                  self.grace)


def dedupe_expiry_day(time_ms: int, grace: timedelta = DEFAULT_GRACE) -> int:
    """Day number (days since 1970-01-01 UTC) after which an event's id may be forgotten.

    The later of: the event time plus 35 days, and the end of its period plus grace. By
    then the gateway refuses that event time, so a resend cannot be counted again.
    """
    moment = datetime.fromtimestamp(time_ms / 1000, UTC)
    _, period_end = period_bounds(period_of(moment))
    until = max(moment + DEDUPE_MIN_WINDOW, period_end + grace)
    return (until - _EPOCH).days + 1


def day_number(moment: datetime) -> int:
    return (moment.astimezone(UTC) - _EPOCH).days
