"""The gateway's Prometheus metrics (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

#: Usage events by receipt: accepted, duplicate, rejected.
INGEST_EVENTS = Counter("meterly_ingest_events_total", "usage events received, by receipt",
                        ["status"])
#: Every problem answer by its type (rate-limited, quota-exceeded, invalid-api-key, ...).
PROBLEMS = Counter("meterly_http_problems_total", "problem+json answers, by type", ["type"])
