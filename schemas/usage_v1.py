"""``usage.v1`` records: accepted usage events of one tenant, packed into one Kafka record.

Faust, and any per-record consumer, pays a fixed cost per Kafka record, so the gateway packs
the accepted events of a request (or of concurrent requests of one tenant) into one record
keyed by tenant. The value is JSON:

    {"v": 1, "tenant": "t_...", "events": [[id, source, meter, time_ms, quantity, subject,
                                            sequence, contributions]]}

``quantity`` is a decimal string (never a float); ``time_ms`` is the event time in Unix
milliseconds (UTC); ``subject`` and ``sequence`` (the CloudEvents ``sequence`` extension
as an integer) may be null; records of writers before ``sequence`` have six columns.
``contributions`` is null for an event of a type no meter reads (it counts as a count and
a sum of ``quantity`` under its type); otherwise the list of what it adds to the meters
that read it, as extracted when it was accepted (docs/meters.md): ``[meter key, version,
aggregation, [[dimension, value], ...], value]``, the value a decimal string (the value's
canonical JSON text for ``unique_count``); an empty list counts nothing. Headers:
``correlation-id``. A newer writer may append columns to an event, and keys to the object:
readers ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

VERSION = 1


class RecordError(ValueError):
    """A usage record that does not follow this schema."""


#: A group of a meter: its (dimension, value) pairs, in the meter's order.
Group = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class MeterContribution:
    """What an event adds to one group of one meter (docs/meters.md)."""

    meter: str
    version: int
    aggregation: str
    group: Group
    #: A decimal string, or a unique_count value's canonical JSON text.
    value: str


@dataclass(frozen=True, slots=True)
class UsageEvent:
    id: str
    source: str
    meter: str
    time_ms: int
    quantity: Decimal
    subject: str | None = None
    #: The producer's sequence number for ``source`` (CloudEvents ``sequence``), if sent.
    sequence: int | None = None
    #: None: no meter reads its type (it counts under ``meter`` as before); otherwise what it
    #: adds to the meters that do.
    contributions: tuple[MeterContribution, ...] | None = None

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.time_ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    tenant: str
    events: tuple[UsageEvent, ...]


def encode(record: UsageRecord) -> bytes:
    return orjson.dumps({
        "v": VERSION,
        "tenant": record.tenant,
        "events": [
            [e.id, e.source, e.meter, e.time_ms, str(e.quantity), e.subject, e.sequence,
             *([] if e.contributions is None else [[
                 [c.meter, c.version, c.aggregation, [list(p) for p in c.group], c.value]
                 for c in e.contributions]])]
            for e in record.events
        ],
    })


def decode(raw: bytes) -> UsageRecord:
    try:
        doc: Any = orjson.loads(raw)
        if doc.get("v") != VERSION:
            raise RecordError(f"unsupported usage record version {doc.get('v')!r}")
        tenant = doc["tenant"]
        events = tuple(
            UsageEvent(str(i), str(s), str(m), int(t), Decimal(q),
                       None if sub is None else str(sub),
                       None if not added or added[0] is None else int(added[0]),
                       None if len(added) < 2 or added[1] is None else _contributions(added[1]))
            for i, s, m, t, q, sub, *added in doc["events"]
        )
    except RecordError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidOperation,
            AttributeError) as exc:
        raise RecordError(f"malformed usage record: {exc}") from exc
    if not isinstance(tenant, str) or not tenant:
        raise RecordError("usage record without tenant")
    return UsageRecord(tenant, events)


def _contributions(doc: Any) -> tuple[MeterContribution, ...]:
    return tuple(
        MeterContribution(str(meter), int(version), str(aggregation),
                          tuple((str(d), str(v)) for d, v, *_ in group), str(value))
        for meter, version, aggregation, group, value, *_ in doc)
