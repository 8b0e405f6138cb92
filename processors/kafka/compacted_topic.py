"""Reading a (compacted) topic from its beginning to its end, and following its tail.

``read_to_end`` reads every partition once, up to the end it had when reading began (the
mirror rebuild, the dead-letter view). ``TopicFollower`` is how a process holds the whole
state a compacted topic keeps (the admin topic's tenants, keys and plans): ``start``
returns once every partition was read to its end, so the process starts serving with all
of it; a thread then follows the tail with a 100 ms fetch wait, so a change made elsewhere
reaches this process well within a second. Only committed records are read, and no
consumer group offsets are committed (partitions are assigned, not subscribed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from processors.kafka.config import client_config
from processors.kafka.messages import data_messages

log = logging.getLogger(__name__)

#: Called with each record that has a value; tombstones (no value) are not passed on.
OnRecord = Callable[[Message], None]


def reader(bootstrap: str, name: str) -> Consumer:
    """A consumer for ``read_to_end``: committed records only, no group offsets."""
    return Consumer({**client_config(bootstrap), "group.id": f"meterly-{name}-unused",
                     "enable.auto.commit": False, "isolation.level": "read_committed",
                     "enable.partition.eof": True})


def read_to_end(consumer: Consumer, topic: str, deadline: float | None = None,
                batch: int = 5000) -> Iterator[list[Message]]:
    """Batches of ``topic``'s records from the beginning of every partition up to the end
    each had when reading began. With ``deadline`` (seconds), stop reading after it even
    if a partition was not read to its end."""
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in partitions}
    pending = {p for p, end in ends.items() if end > 0}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
    stop_at = None if deadline is None else time.monotonic() + deadline
    while pending and (stop_at is None or time.monotonic() < stop_at):
        messages = consumer.consume(num_messages=batch, timeout=0.5)
        for msg in messages:
            error, partition = msg.error(), msg.partition()
            if error is not None and partition is not None:
                pending.discard(partition)  # end of partition
        found = list(data_messages(messages))
        for msg in found:
            offset, partition = msg.offset(), msg.partition()
            if offset is not None and partition is not None and offset + 1 >= ends[partition]:
                pending.discard(partition)
        if found:
            yield found


def total_records(consumer: Consumer, topic: str) -> int:
    """How many offsets ``topic`` spans (an upper bound on its records, for progress)."""
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
               for p in partitions)


class TopicFollower:
    def __init__(self, bootstrap: str, topic: str, on_value: OnRecord, name: str) -> None:
        self.topic = topic
        self._on_value = on_value
        self._caught_up = threading.Event()
        self._running = True
        self._consumer = Consumer({
            **client_config(bootstrap),
            "group.id": f"meterly-{name}-unused",  # assign() only; no offsets committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 100,
        })
        self._thread = threading.Thread(target=self._follow, name=name, daemon=True)
        #: Next offset to apply, per partition (written by the follower thread only).
        self._positions: dict[int, int] = {}
        self._bootstrap, self._name = bootstrap, name
        self._probe: Consumer | None = None

    def catch_up(self, timeout: float) -> bool:
        """Wait until everything written to the topic before this call is applied (a
        record just written by another process, say); False after ``timeout``."""
        if self._probe is None:
            self._probe = Consumer({**client_config(self._bootstrap),
                                    "group.id": f"meterly-{self._name}-probe-unused",
                                    "enable.auto.commit": False})
        deadline = time.monotonic() + timeout
        meta = self._probe.list_topics(self.topic, timeout=timeout).topics[self.topic]
        ends = {p: self._probe.get_watermark_offsets(TopicPartition(self.topic, p),
                                                     timeout=timeout, cached=False)[1]
                for p in meta.partitions}
        while time.monotonic() < deadline:
            positions = dict(self._positions)
            if all(positions.get(p, 0) >= end for p, end in ends.items() if end > 0):
                return True
            time.sleep(0.02)
        return False

    def start(self, timeout: float = 60.0) -> None:
        """Start following; return once the topic was read to its end (or raise)."""
        self._thread.start()
        if not self._caught_up.wait(timeout):
            raise RuntimeError(f"could not read {self.topic} within {timeout:.0f}s")

    def stop(self) -> None:
        self._running = False
        self._thread.join(5)

    def _follow(self) -> None:
        meta = self._consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        partitions = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions]
        ends = {}
        for tp in partitions:
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=30)
            ends[tp.partition] = high
        self._consumer.assign(partitions)
        while self._running:
            msg = self._consumer.poll(0.1)
            if msg is None:
                positions = self._consumer.position(partitions)
                self._positions = {tp.partition: tp.offset for tp in positions
                                   if tp.offset >= 0}
                if not self._caught_up.is_set() and all(
                        tp.offset >= ends[tp.partition] or ends[tp.partition] == 0
                        for tp in positions):
                    self._caught_up.set()
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: %s", self.topic, err)
                continue
            value, offset, partition = msg.value(), msg.offset(), msg.partition()
            if value is not None and offset is not None:
                self._on_value(msg)
            if offset is not None and partition is not None:
                self._positions = {**self._positions, partition: offset + 1}
        self._consumer.close()
        if self._probe is not None:
            self._probe.close()
