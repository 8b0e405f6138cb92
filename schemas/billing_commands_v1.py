"""``billing-commands.v1`` records: close one tenant's period. Key: tenant id.

Value JSON ``{"v": 1, "tenant_id": ..., "period": "2026-11", "reason": "schedule"}``;
header ``correlation-id`` when the request came over HTTP.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import orjson

VERSION = 1


@dataclass(frozen=True)
class CloseCommand:
    tenant_id: str
    period: str
    #: "reconcile": re-sent because the period's invoice or its PDF was still missing.
    reason: Literal["schedule", "operator", "reconcile"] = "schedule"
    #: Carried in the record's ``correlation-id`` header; not part of the value.
    correlation_id: str | None = None


def encode(command: CloseCommand) -> bytes:
    doc = asdict(command)
    doc.pop("correlation_id")
    return orjson.dumps({"v": VERSION, **doc})


def decode(raw: bytes) -> CloseCommand:
    doc = orjson.loads(raw)
    if doc.pop("v", None) != VERSION:
        raise ValueError("unsupported billing command version")
    # Fields a newer writer added are ignored; the correlation id is never in the value.
    return CloseCommand(doc["tenant_id"], doc["period"], doc.get("reason", "schedule"))
