"""CloudEvents Kafka protocol binding 1.0: a Kafka record -> a CloudEvent as a JSON object.

Structured mode: header ``content-type: application/cloudevents+json`` and the whole event
as the value. Binary mode: attributes in ``ce_*`` headers (``ce_specversion``, ``ce_id``,
``ce_source``, ``ce_type``, ``ce_time``, ``ce_subject``) and the event's data as the value,
with ``content-type`` naming the data's media type. Meterly's ingest topic takes both, with
the tenant id as the record key.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from schemas.cloudevents import EventRejected

STRUCTURED = "application/cloudevents+json"


RawHeaders = (dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None)


def _headers(raw: RawHeaders) -> dict[str, str]:
    pairs = raw.items() if isinstance(raw, dict) else (raw or [])
    headers = {}
    for name, value in pairs:
        if isinstance(value, bytes):
            headers[name.lower()] = value.decode("utf-8", errors="replace")
        elif value is not None:
            headers[name.lower()] = value
    return headers


def record_to_event(value: bytes | None, headers: RawHeaders) -> dict[str, Any]:
    """The CloudEvent a record carries; raises EventRejected when it carries none."""
    attrs = _headers(headers)
    content_type = attrs.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == STRUCTURED:
            if value is None:
                raise EventRejected("structured-mode record without a value")
            event = json.loads(value, parse_float=Decimal)
            if not isinstance(event, dict):
                raise EventRejected("structured-mode value must be a JSON object")
            return event
        if "ce_specversion" not in attrs:
            raise EventRejected("neither structured mode (content-type "
                                f"{STRUCTURED}) nor binary mode (ce_specversion header)")
        event = {k[3:]: v for k, v in attrs.items() if k.startswith("ce_")}
        if value is not None and value.strip():
            if content_type not in ("", "application/json"):
                raise EventRejected(f"binary-mode data must be application/json, not "
                                    f"{content_type}")
            event["data"] = json.loads(value, parse_float=Decimal)
        return event
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, EventRejected):
            raise
        raise EventRejected(f"record value is not valid JSON: {exc}") from None
    except RecursionError:
        raise EventRejected("record value is nested too deeply") from None
