"""The webhook dead-letter topic, read whole: what the operator API lists and replays."""

from __future__ import annotations

from processors.kafka.compacted_topic import read_to_end, reader
from processors.kafka.invalid import DECODE_ERRORS, DeadLetters, invalid_record, where
from schemas import webhooks_v1
from schemas.topics import WEBHOOK_DEAD_LETTER
from schemas.webhooks_v1 import Delivery

#: How long one listing may read the topic (it holds at most the retention's worth).
READ_SECONDS = 30.0


def read_dead_letters(bootstrap: str, topic: str, limit: int | None) -> list[Delivery]:
    """The dead-lettered deliveries, oldest first; the newest ``limit`` with a limit."""
    consumer = reader(bootstrap, "dead-letter-reader")
    letters = DeadLetters(bootstrap, topic.removesuffix(WEBHOOK_DEAD_LETTER.name),
                          "webhook-dead-letter-reader")
    try:
        found = []
        for batch in read_to_end(consumer, topic, deadline=READ_SECONDS):
            for msg in batch:
                if (value := msg.value()) is None:
                    continue
                try:
                    found.append(webhooks_v1.decode_delivery(value))
                except DECODE_ERRORS as exc:
                    invalid_record(WEBHOOK_DEAD_LETTER, where(msg), exc, letters.of(msg))
        letters.flush()
    finally:
        consumer.close()
    return found[-limit:] if limit else found
