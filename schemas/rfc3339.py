"""Times on the wire: RFC 3339 in UTC with a ``Z`` (``2026-11-26T10:00:00.123Z``).

Every record, document and message Meterly writes carries its times this way; these are the
one place that writes and reads them.
"""

from __future__ import annotations

from datetime import UTC, datetime


def time_text(moment: datetime, timespec: str = "milliseconds") -> str:
    """``moment`` in UTC as RFC 3339 text, to ``timespec`` (as ``datetime.isoformat``)."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def now_text() -> str:
    return time_text(datetime.now(UTC))


def parse_time(text: str) -> datetime:
    """RFC 3339 text (``Z`` or an offset) as an aware datetime in UTC."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
