"""Create Meterly's topics idempotently at start."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from processors.kafka.config import client_config
from schemas.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)


class TopicMismatchError(RuntimeError):
    """An existing topic has another partition count than its definition."""


def ensure_topics(
    bootstrap: str,
    prefix: str,
    replication: int,
    specs: tuple[TopicSpec, ...] = ALL_TOPICS,
    timeout: float = 30.0,
) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left as they are."""
    admin = AdminClient(client_config(bootstrap))
    existing = admin.list_topics(timeout=timeout).topics
    created: list[str] = []
    wanted: list[NewTopic] = []
    for spec in specs:
        name = spec.full_name(prefix)
        if name in existing:
            have = len(existing[name].partitions)
            if have != spec.partitions:
                raise TopicMismatchError(
                    f"topic {name} has {have} partitions, its definition "
                    f"(schemas/topics.py) has {spec.partitions}; keys would map to other "
                    "partitions than the ones holding their state, so Meterly refuses to "
                    "run with it"
                )
            continue
        wanted.append(
            NewTopic(name, spec.partitions, replication, config=spec.config(replication))
        )
    if not wanted:
        return created
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            # Another process (a second gateway starting at the same time) won the race.
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if created:
        log.info("created topics", extra={"topics": created})
    return created
