"""The ingest dead-letter topic: what the operator API lists and replays.

A record the ingest validator refused is kept as it was sent, with the reason
(``meterly-error``) and where it came from (``meterly-source``). Replaying writes it back to
the ingest topic as it was sent, with ``meterly-replayed-from`` naming the dead letter, and
the validator judges it again: a record whose cause was fixed (a tenant reactivated, a
validator upgraded) is counted, one still invalid is dead-lettered again. Replaying twice
counts nothing twice: the counter deduplicates every (tenant, source, id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
from confluent_kafka import Producer

from processors.kafka.compacted_topic import read_to_end, reader
from processors.kafka.config import client_config
from processors.kafka.invalid import where

#: How long one listing may read the topic (it holds at most the retention's worth).
READ_SECONDS = 30.0
#: Headers the validator adds; a replayed record carries the producer's own headers only.
OWN_HEADERS = ("meterly-error", "meterly-source", "meterly-replayed-from")

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class IngestDeadLetter:
    #: ``topic/partition/offset`` of the dead letter.
    place: str
    #: Where the record was read from when it was refused.
    source: str
    tenant_id: str
    reason: str
    key: bytes | None
    value: bytes | None
    headers: Headers

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)

    @property
    def event_id(self) -> str | None:
        """The CloudEvent's id: its ``ce_id`` header (binary mode) or its ``id`` (structured
        mode), when the record is readable that far."""
        if (found := self.header("ce_id")) is not None:
            return found
        try:
            doc = orjson.loads(self.value or b"")
        except orjson.JSONDecodeError:
            return None
        event_id = doc.get("id") if isinstance(doc, dict) else None
        return event_id if isinstance(event_id, str) else None

    def replayable_headers(self) -> Headers:
        return [*((k, v) for k, v in self.headers if k not in OWN_HEADERS),
                ("meterly-replayed-from", self.place.encode())]


def _header(headers: Headers, name: str) -> str | None:
    return next((_text(v) for k, v in headers if k == name and v), None)


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def read_ingest_dead_letters(bootstrap: str, topic: str) -> list[IngestDeadLetter]:
    """Every dead letter the topic holds, oldest first (per partition)."""
    consumer = reader(bootstrap, "ingest-dead-letter-reader")
    found: list[IngestDeadLetter] = []
    try:
        for batch in read_to_end(consumer, topic, deadline=READ_SECONDS):
            for msg in batch:
                raw = msg.headers() or []
                headers: Headers = list(raw.items()) if isinstance(raw, dict) else list(raw)
                key = msg.key()
                found.append(IngestDeadLetter(
                    where(msg), _header(headers, "meterly-source") or "",
                    key.decode("utf-8", "replace") if key else "",
                    _header(headers, "meterly-error") or "", key, msg.value(), headers))
    finally:
        consumer.close()
    return found


def replay(bootstrap: str, ingest_topic: str, letters: list[IngestDeadLetter],
           progress: Callable[[int], None] | None = None) -> int:
    """Write ``letters`` back to the ingest topic; return how many Kafka acknowledged
    (raises when some were not)."""
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5})
    for i, letter in enumerate(letters, 1):
        producer.produce(ingest_topic, letter.value, key=letter.key,
                         headers=letter.replayable_headers())
        producer.poll(0)
        if progress is not None and i % 1000 == 0:
            progress(i)
    left = producer.flush(60)
    if left:
        raise RuntimeError(f"{left} of {len(letters)} replayed records not acknowledged")
    return len(letters)
