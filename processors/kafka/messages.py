"""Kafka records as the workers want them: errors raised, end-of-partition events skipped."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from confluent_kafka import KafkaError, KafkaException, Message


def data_messages(messages: Iterable[Message]) -> Iterator[Message]:
    for msg in messages:
        err = msg.error()
        if err is None:
            yield msg
        elif err.code() != KafkaError._PARTITION_EOF:
            raise KafkaException(err)


def correlation_ids(messages: Iterable[Message]) -> list[str]:
    """The ``correlation-id`` headers of ``messages``, in order, each once."""
    found: dict[str, None] = {}
    for msg in messages:
        for header in msg.headers() or []:
            name, value = header[0], header[1]
            if name == "correlation-id" and value is not None:
                found[value.decode() if isinstance(value, bytes) else str(value)] = None
    return list(found)
