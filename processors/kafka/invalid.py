"""What a reader does with a record it cannot decode: it dead-letters it and reads on.

No record stops a reader (issue 14: one undecodable record on the usage topic used to
crash-loop the counter for every tenant). Every reader calls ``invalid_record`` with the
topic, where the record was and why it could not be read: it is logged (topic, partition,
offset, reason) and counted in ``meterly_invalid_records_total{topic}``, and the reader's
sender writes it, unchanged, to the topic's dead-letter topic (``TopicSpec.dead_letter``:
``ingest.dead-letter.v1`` for the ingest topic, ``invalid-records.v1`` for every other), with
these headers added to the record's own:

- ``meterly-error``: the reason;
- ``meterly-source``: ``topic/partition/offset`` where it was read;
- ``meterly-reader``: which reader refused it (``counter``, ``mirror``, ``admin-follower``...).

``DeadLetters`` is that sender for every reader but the ingest validator (which has a
replay path of its own): inside the reader's transaction when it passes its transactional
producer (the counter), otherwise through an idempotent producer of its own, flushed before
the reader commits past the record, so a record is never passed over without being kept.
Several readers of one topic (every process follows the admin topic) each keep a copy;
``read_invalid_records`` lists one entry per source place, naming every reader.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import Message, Producer
from prometheus_client import Counter

from processors.kafka.compacted_topic import read_to_end, reader
from processors.kafka.config import client_config
from schemas.topics import INVALID_RECORDS, TopicSpec

log = logging.getLogger(__name__)
INVALID = Counter("meterly_invalid_records_total",
                  "records a reader could not decode (each dead-lettered), by topic",
                  ["topic"])

Headers = list[tuple[str, str | bytes | None]]
#: What decoding a record of bytes nobody vouches for can raise (``Decimal("x")`` raises an
#: ArithmeticError, a JSON list where an object was expected an AttributeError...).
DECODE_ERRORS = (ValueError, LookupError, TypeError, ArithmeticError, AttributeError)
#: How long one listing may read the invalid-records topic.
READ_SECONDS = 30.0


def where(msg: Message) -> str:
    return f"{msg.topic()}/{msg.partition()}/{msg.offset()}"


def invalid_record(spec: TopicSpec, place: str, error: BaseException,
                   dead_letter: Callable[[str], None]) -> None:
    """Dead-letter the record at ``place`` (topic/partition/offset) of ``spec``'s topic."""
    INVALID.labels(spec.name).inc()
    log.warning("unreadable record dead-lettered", extra={
        "topic": spec.name, "record": place, "reason": str(error),
        "dead_letter": spec.dead_letter})
    dead_letter(str(error))


class DeadLetter:
    """One record's dead-lettering, bound to the record (``DeadLetters.of``)."""

    def __init__(self, sender: DeadLetters, place: str, key: bytes | None,
                 value: bytes | None, headers: Sequence[tuple[str, str | bytes | None]] | None,
                 producer: Producer | None) -> None:
        self.sender, self.place = sender, place
        self.key, self.value = key, value
        self.headers: Headers = list(headers or [])
        self.producer = producer

    def __call__(self, reason: str) -> None:
        self.sender.send(self, reason)


class DeadLetters:
    """The sender of one reader (``reader`` names it in ``meterly-reader``)."""

    def __init__(self, bootstrap: str, prefix: str, reader_name: str) -> None:
        self.bootstrap = bootstrap
        self.topic = INVALID_RECORDS.full_name(prefix)
        self.reader = reader_name
        self._producer: Producer | None = None
        self.sent = 0

    def of(self, msg: Message, producer: Producer | None = None) -> DeadLetter:
        """The dead-lettering of ``msg``; through ``producer`` (an open transaction's) when
        given, else through this sender's own producer."""
        raw = msg.headers() or []
        headers = list(raw.items()) if isinstance(raw, dict) else list(raw)
        return DeadLetter(self, where(msg), msg.key(), msg.value(), headers, producer)

    def of_record(self, place: str, key: bytes | None, value: bytes | None,
                  headers: Sequence[tuple[str, str | bytes | None]] | None) -> DeadLetter:
        """The dead-lettering of a record read by another client library (Faust, aiokafka)."""
        return DeadLetter(self, place, key, value, headers, None)

    def send(self, letter: DeadLetter, reason: str) -> None:
        headers = [*letter.headers, ("meterly-error", reason.encode()),
                   ("meterly-source", letter.place.encode()),
                   ("meterly-reader", self.reader.encode())]
        producer = letter.producer or self._own()
        producer.produce(self.topic, letter.value, key=letter.key, headers=headers)
        self.sent += 1

    def _own(self) -> Producer:
        if self._producer is None:
            self._producer = Producer({**client_config(self.bootstrap),
                                       "enable.idempotence": True, "acks": "all",
                                       "linger.ms": 5})
        return self._producer

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until Kafka has every dead letter sent through this sender's own producer;
        raises otherwise, so the reader does not commit past a record it did not keep."""
        if self._producer is not None and self._producer.flush(timeout):
            raise RuntimeError(f"dead letters to {self.topic} not acknowledged in "
                               f"{timeout:.0f}s")


@dataclass(frozen=True)
class InvalidRecord:
    """One unreadable record: where it was, who refused it and why, and its bytes."""

    source: str
    readers: tuple[str, ...]
    reason: str
    key: bytes | None
    value: bytes | None
    #: ``topic/partition/offset`` of its first copy in the invalid-records topic.
    place: str
    timestamp_ms: int


def _text(value: str | bytes | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


def read_invalid_records(bootstrap: str, topic: str) -> list[InvalidRecord]:
    """Every unreadable record the topic holds, one per source place, oldest first."""
    consumer = reader(bootstrap, "invalid-records-reader")
    found: dict[str, InvalidRecord] = {}
    try:
        for batch in read_to_end(consumer, topic, deadline=READ_SECONDS):
            for msg in batch:
                raw = msg.headers() or []
                headers = dict((k, _text(v)) for k, v in (
                    raw.items() if isinstance(raw, dict) else raw))
                source = headers.get("meterly-source", "")
                reader_name = headers.get("meterly-reader", "")
                seen = found.get(source)
                if seen is not None:
                    if reader_name not in seen.readers:
                        found[source] = InvalidRecord(
                            seen.source, (*seen.readers, reader_name), seen.reason, seen.key,
                            seen.value, seen.place, seen.timestamp_ms)
                    continue
                found[source] = InvalidRecord(
                    source, (reader_name,), headers.get("meterly-error", ""), msg.key(),
                    msg.value(), where(msg), msg.timestamp()[1])
    finally:
        consumer.close()
    return list(found.values())
