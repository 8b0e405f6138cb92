"""The gateway's Prometheus metrics (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

#: Usage events by receipt: accepted, duplicate, rejected.
INGEST_EVENTS = Counter("meterly_ingest_events_total", "usage events received, by receipt",
                        ["status"])
#: Every problem answer by its type (rate-limited, quota-exceeded, invalid-api-key, ...).
PROBLEMS = Counter("meterly_http_problems_total", "problem+json answers, by type", ["type"])
#: Events refused inside an accepted batch, by a short reason (the receipt has the detail).
INGEST_REJECTIONS = Counter("meterly_ingest_rejections_total",
                            "usage events rejected in a batch, by reason", ["reason"])

_REASONS = {"event": "outside-window", "each": "not-an-object", "type": "meter",
            "data.quantity": "quantity", "time": "time", "data": "data",
            "specversion": "specversion", "datacontenttype": "datacontenttype"}


def rejection_reason(detail: str) -> str:
    """A bounded label for a rejection's text: the field it is about ("quantity", "time",
    "id", ...) or "outside-window" for event times in closed periods."""
    first = detail.split(" ", 1)[0].strip("\"'")
    return _REASONS.get(first, first if first.isidentifier() else "other")
