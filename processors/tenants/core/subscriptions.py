"""A tenant's plan history (``Subscription``): which assignment is in force at a moment."""

from __future__ import annotations

from datetime import datetime

from schemas.admin_v1 import Assignment, Subscription
from schemas.rfc3339 import parse_time


def assignment_at(subscription: Subscription | None, at: datetime) -> Assignment | None:
    """The assignment in force at ``at`` (the latest that started at or before it)."""
    if subscription is None:
        return None
    started = [a for a in subscription.assignments if parse_time(a.effective_from) <= at]
    return max(started, key=lambda a: parse_time(a.effective_from)) if started else None
