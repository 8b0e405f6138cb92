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
