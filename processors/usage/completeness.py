"""The close barrier: the instant up to which every accepted event is counted and mirrored.

``Completeness`` runs in each billing worker, in a thread of its own. The rules are pure
(``processors.usage.core.completeness``); this is the Kafka side. Protocol, repeated about
twice a second (``advance``):

1. Start a snapshot at ``s`` (the system clock): record the ingest topic's high watermarks.
2. Wait until the ingest validator's group has committed past them (``_left``).
3. Record ``usage.v1``'s high watermarks; wait until the counter's group has committed past.
4. Record the changelog's high watermarks; wait until the mirror's group has committed past.
5. Every event accepted before ``s`` is now in Cassandra: ``complete_through = s``. Publish
   it (``ProgressTable``, gauge) and start the next snapshot at 1.

"Committed past" is exact with transactions: the offsets between a group's committed offset
and the target may hold only transaction markers and aborted records (a consumer never sees
those, so its committed offset may stop short of them); a ``read_committed`` reader probes
those offsets and counts the group as past when it finds no record below the target.

A close waits for a snapshot taken after its command was written (``reached``): the sweep
writes a period's commands only after its end, its grace and the gateways' delivery timeout
have passed, so every event of the period was accepted before that snapshot. A stage that
never catches up (a stopped counter, a validator nobody runs while records wait on the ingest
topic) holds the closes and says so: ``state``, the gauges and ``meterly billing status``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import Gauge

from processors.kafka.config import client_config
from processors.kafka.retry import with_retries
from processors.usage.core.completeness import STAGES, BarrierState, Snapshot, records_left
from schemas.topics import (
    COUNTER_CHANGELOG,
    COUNTER_GROUP,
    INGEST,
    INGEST_VALIDATOR_GROUP,
    MIRROR_GROUP,
    USAGE,
)

log = logging.getLogger(__name__)
COMPLETE_THROUGH = Gauge("meterly_usage_complete_through_seconds",
                         "Unix time before which every accepted event is counted and mirrored")
BEHIND = Gauge("meterly_usage_barrier_records_behind",
               "records the stage the close barrier waits for has still to commit past",
               ["stage"])
#: A stage further behind than this is behind; closer than this, the offsets are probed.
PROBE_LIMIT = 1000
#: Failed checks in a row (half a second apart) after which the consumers are made anew.
RECONNECT_AFTER = 10


class Completeness:
    def __init__(self, bootstrap: str, prefix: str,
                 publish: Callable[[BarrierState], None] | None = None,
                 interval: float = 0.5) -> None:
        self._topics = {"ingest": INGEST.full_name(prefix), "usage": USAGE.full_name(prefix),
                        "changelog": COUNTER_CHANGELOG.full_name(prefix)}
        self._bootstrap, self._prefix = bootstrap, prefix
        self._groups, self._reader = self._connect()
        self._partitions: dict[str, list[int]] = {}
        self._publish = publish
        self._interval = interval
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._reached: datetime | None = None
        self._behind = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="completeness", daemon=True)

    def _connect(self) -> tuple[dict[str, Consumer], Consumer]:
        groups = {"ingest-validator": INGEST_VALIDATOR_GROUP, "counter": COUNTER_GROUP,
                  "mirror": MIRROR_GROUP}
        # One consumer per group, never subscribed: it only asks for the group's committed
        # offsets (which waits for any open transaction carrying offsets, KIP-447).
        consumers = {stage: Consumer({**client_config(self._bootstrap),
                                      "group.id": f"{self._prefix}{group}",
                                      "enable.auto.commit": False})
                     for stage, group in groups.items()}
        reader = Consumer({**client_config(self._bootstrap),
                           "group.id": f"{self._prefix}completeness-unused",
                           "isolation.level": "read_committed",
                           "enable.partition.eof": True, "enable.auto.commit": False,
                           "auto.offset.reset": "earliest"})
        return consumers, reader

    def _reconnect(self) -> None:
        """New consumers: a broker that was fenced and came back (a frozen single-node
        KRaft broker does) can leave a client's metadata saying "unknown partition" for
        good, since these consumers subscribe to nothing and so never refresh it."""
        for consumer in (*self._groups.values(), self._reader):
            consumer.close()
        self._groups, self._reader = self._connect()
        self._partitions.clear()

    # -- what closes ask -------------------------------------------------------------------

    def reached(self, moment: datetime) -> bool:
        """Whether every event accepted before ``moment`` is counted and mirrored."""
        with self._lock:
            return self._reached is not None and self._reached >= moment

    def state(self) -> BarrierState:
        with self._lock:
            snap = self._snapshot
            return BarrierState(self._reached, snap.stage_name if snap else "starting",
                                snap.taken_at if snap else datetime.now(UTC), self._behind)

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for consumer in (*self._groups.values(), self._reader):
            consumer.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.advance()
                failures = 0
            except KafkaException as exc:
                failures += 1
                log.warning("usage completeness not checked: %s", exc)
                if failures % RECONNECT_AFTER == 0:
                    log.warning("usage completeness: %d checks failed in a row; "
                                "reconnecting to Kafka", failures)
                    self._reconnect()
            self._stop.wait(self._interval)

    def advance(self) -> None:
        """One step of the protocol: start a snapshot, or move the current one on as far
        as the groups have committed."""
        snap = self._snapshot or self._start(datetime.now(UTC))
        left = 0
        while not snap.passed:
            stage = STAGES[snap.stage][0]
            left = self._left(stage, snap)
            BEHIND.labels(stage).set(left)
            if left:
                break
            snap = self._next_stage(snap)
        if snap.passed:
            # Step 5.
            COMPLETE_THROUGH.set(snap.taken_at.timestamp())
            following = self._start(datetime.now(UTC))
            with self._lock:
                self._reached, self._snapshot, self._behind = snap.taken_at, following, 0
        else:
            with self._lock:
                self._snapshot, self._behind = snap, left
        if self._publish is not None:
            self._publish(self.state())

    def _start(self, moment: datetime) -> Snapshot:
        # Step 1.
        return Snapshot(moment, 0, self._high(STAGES[0][1]))

    def _next_stage(self, snap: Snapshot) -> Snapshot:
        # Steps 3 and 4: the next stage's watermarks, recorded only now.
        stage = snap.stage + 1
        if stage >= len(STAGES):
            return replace(snap, stage=stage, targets={})
        return Snapshot(snap.taken_at, stage, self._high(STAGES[stage][1]))

    def _high(self, topic_key: str) -> dict[int, int]:
        topic = self._topics[topic_key]
        return {p: self._watermarks(topic, p)[1] for p in self._partitions_of(topic_key)}

    def _partitions_of(self, topic_key: str) -> list[int]:
        if topic_key not in self._partitions:
            topic = self._topics[topic_key]
            meta = with_retries(lambda: self._reader.list_topics(topic, timeout=10),
                                f"partitions of {topic}")
            self._partitions[topic_key] = sorted(meta.topics[topic].partitions)
        return self._partitions[topic_key]

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        low, high = with_retries(lambda: self._reader.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=10, cached=False),
            f"watermarks of {topic}[{partition}]")
        return int(low), int(high)

    def _left(self, stage: str, snap: Snapshot) -> int:
        """Steps 2 to 4: records the stage's group has still to commit past."""
        topic = self._topics[dict(STAGES)[stage]]
        asked = [TopicPartition(topic, p) for p in snap.targets]
        committed = {tp.partition: tp.offset for tp in with_retries(
            lambda: self._groups[stage].committed(asked, timeout=10),
            f"committed offsets of {stage}")}
        low = {p: self._watermarks(topic, p)[0] for p in snap.targets if committed.get(p, -1) < 0}
        left = 0
        for partition, n in records_left(committed, low, snap.targets).items():
            start = max(committed.get(partition, -1), low.get(partition, 0))
            if n > PROBE_LIMIT or not self._only_markers(topic, partition, start,
                                                         snap.targets[partition]):
                left += n
        return left

    def _only_markers(self, topic: str, partition: int, start: int, target: int) -> bool:
        """Whether a read_committed reader finds no record in [start, target)."""
        self._reader.assign([TopicPartition(topic, partition, start)])
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                msg = self._reader.poll(0.2)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                # A record, or the end (the last stable offset for read_committed).
                return (msg.offset() or 0) >= target
            return False
        finally:
            self._reader.unassign()
