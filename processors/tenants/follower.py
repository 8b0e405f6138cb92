"""The admin topic as a process sees it: a ``Directory`` fed from the compacted topic, and
the one way to change it (``publish``).

Writes go to Kafka first (acks=all) and are then applied to this process's directory, so
the process that created a key accepts it on the very next request. Other processes follow
the topic's tail (``processors.kafka.compacted_topic``), so a revocation reaches them well
within a second.
"""

from __future__ import annotations

import logging

from confluent_kafka import Message

from processors.kafka.async_producer import AsyncProducer
from processors.kafka.compacted_topic import TopicFollower
from processors.kafka.invalid import DECODE_ERRORS, DeadLetters, invalid_record, where
from processors.tenants.core.directory import Directory
from schemas import admin_v1
from schemas.admin_v1 import AdminEntity
from schemas.topics import ADMIN

log = logging.getLogger(__name__)


class AdminTopic:
    def __init__(self, bootstrap: str, topic: str, directory: Directory,
                 producer: AsyncProducer | None = None) -> None:
        self.topic = topic
        self.directory = directory
        self._producer = producer
        self._follower = TopicFollower(bootstrap, topic, self._apply, "admin-directory")
        self._dead_letters = DeadLetters(bootstrap, topic.removesuffix(ADMIN.name),
                                         "admin-follower")

    def start(self, timeout: float = 60.0) -> None:
        self._follower.start(timeout)

    def stop(self) -> None:
        self._follower.stop()

    def catch_up(self, timeout: float) -> bool:
        """Wait until every admin record written before this call is in the directory."""
        return self._follower.catch_up(timeout)

    def _apply(self, msg: Message) -> None:
        try:
            entity = admin_v1.decode(msg.value() or b"")
        except DECODE_ERRORS as exc:
            # Every process following the topic keeps a copy; the listing shows one.
            invalid_record(ADMIN, where(msg), exc, self._dead_letters.of(msg))
            self._dead_letters.flush()
            return
        self.directory.apply(entity)

    async def publish(self, entity: AdminEntity) -> None:
        if self._producer is None:
            raise RuntimeError("this process only reads the admin topic")
        await self._producer.send(self.topic, admin_v1.encode(entity), key=entity.record_key)
        self.directory.apply(entity)


def follow_admin(bootstrap: str, topic: str,
                 producer: AsyncProducer | None = None) -> tuple[Directory, AdminTopic]:
    """A new directory and the topic that feeds it (call ``start`` on the second)."""
    directory = Directory()
    return directory, AdminTopic(bootstrap, topic, directory, producer)
