"""Webhook records: the messages Meterly sends and the deliveries that carry them.

A message (``webhook-events.v1``, key: tenant id) is what a receiver gets as the body,
in the payload shape the Standard Webhooks spec recommends::

    {"type": "invoice.finalized", "timestamp": "2026-12-01T01:00:02Z", "data": {...}}

and its ``id`` is the ``webhook-id`` header: the same for every attempt and every replay,
so receivers can drop repeats. Message ids are derived from what happened (an invoice's
id and event), so a message produced twice is still one message to a receiver.

A delivery (retry and dead-letter topics, key: endpoint id) is one message for one endpoint
with the attempts made so far and when the next one is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

VERSION = 1
INVOICE_FINALIZED = "invoice.finalized"
INVOICE_VOIDED = "invoice.voided"
USAGE_THRESHOLD = "usage.threshold_reached"
USAGE_GAP = "usage.gap_detected"
EVENT_TYPES = (INVOICE_FINALIZED, INVOICE_VOIDED, USAGE_THRESHOLD, USAGE_GAP)


@dataclass(frozen=True)
class Message:
    id: str
    type: str
    tenant_id: str
    #: RFC 3339 UTC
    timestamp: str
    data: dict[str, Any]

    def body(self) -> bytes:
        """The exact bytes signed and sent: the same for every attempt."""
        return orjson.dumps({"type": self.type, "timestamp": self.timestamp, "data": self.data})


@dataclass(frozen=True)
class Delivery:
    message: Message
    endpoint_id: str
    #: Attempts made so far.
    attempts: int
    #: Unix milliseconds when the next attempt is due.
    due_ms: int
    last_error: str | None = None


def encode_message(message: Message) -> bytes:
    return orjson.dumps({"v": VERSION, "id": message.id, "type": message.type,
                         "tenant_id": message.tenant_id, "timestamp": message.timestamp,
                         "data": message.data})


def decode_message(raw: bytes) -> Message:
    doc = orjson.loads(raw)
    if doc.get("v") != VERSION:
        raise ValueError("unsupported webhook message version")
    return Message(doc["id"], doc["type"], doc["tenant_id"], doc["timestamp"], doc["data"])


def encode_delivery(delivery: Delivery) -> bytes:
    return orjson.dumps({"v": VERSION, "message": orjson.loads(encode_message(delivery.message)),
                         "endpoint_id": delivery.endpoint_id, "attempts": delivery.attempts,
                         "due_ms": delivery.due_ms, "last_error": delivery.last_error})


def decode_delivery(raw: bytes) -> Delivery:
    doc = orjson.loads(raw)
    if doc.get("v") != VERSION:
        raise ValueError("unsupported webhook delivery version")
    return Delivery(decode_message(orjson.dumps(doc["message"])), doc["endpoint_id"],
                    doc["attempts"], doc["due_ms"], doc.get("last_error"))
