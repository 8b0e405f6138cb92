"""What a reader does with a record it cannot decode: the topic's ``on_invalid`` policy
(``schemas.topics``), applied here and nowhere else.

Every reader calls ``invalid_record`` with the topic, where the record was and why it could
not be read. It is logged (topic, partition, offset, reason) and counted in
``meterly_invalid_records_total{topic, policy}``; then ``skip`` returns, ``dead-letter``
hands the reason to the reader's dead-letter sender (which writes the record there, in the
reader's transaction where it has one) and returns, and ``stop`` raises ``InvalidRecord``,
which fails the reader.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Message
from prometheus_client import Counter

from schemas.topics import TopicSpec

log = logging.getLogger(__name__)
INVALID = Counter("meterly_invalid_records_total",
                  "records a reader could not decode, by topic and the policy applied",
                  ["topic", "policy"])


class InvalidRecord(ValueError):  # noqa: N818 - the record is what is invalid
    """A record of a ``stop`` topic that its reader could not decode."""


def where(msg: Message) -> str:
    return f"{msg.topic()}/{msg.partition()}/{msg.offset()}"


def invalid_record(spec: TopicSpec, place: str, error: BaseException,
                   dead_letter: Callable[[str], None] | None = None) -> None:
    """Apply ``spec.on_invalid`` to the record at ``place`` (topic/partition/offset)."""
    INVALID.labels(spec.name, spec.on_invalid).inc()
    # A dead-lettered record is kept with its reason; a skipped one is gone; a stop needs
    # a person.
    level = {"dead-letter": logging.INFO, "skip": logging.WARNING}.get(spec.on_invalid,
                                                                      logging.ERROR)
    log.log(level, "unreadable record", extra={"topic": spec.name, "record": place,
                                               "policy": spec.on_invalid, "reason": str(error)})
    if spec.on_invalid == "stop":
        raise InvalidRecord(f"{place}: {error}") from error
    if spec.on_invalid == "dead-letter":
        if dead_letter is None:
            raise RuntimeError(f"{spec.name} dead-letters unreadable records; its reader "
                               "must pass a dead-letter sender")
        dead_letter(str(error))
