"""The mirror worker: counter changelog -> Cassandra ``usage_by_period``.

Protocol, per batch:

1. Read committed changelog records (``read_committed``: an aborted transaction's records
   never arrive). A record it cannot read is dead-lettered to ``invalid-records.v1``
   (``processors.kafka.invalid``, flushed before step 5) and the mirror reads on.
2. Keep the latest value per counter (and per counter and day, for the console's charts)
   and per defined meter's group (``M`` records, docs/meters.md).
3. Write them to Cassandra (``usage_by_period``, ``usage_daily``, ``usage_groups``)
   ``USING TIMESTAMP <changelog offset>``
   (``processors.usage.mirror_table``): a replayed or reordered write never moves a counter
   back.
4. Send the usage threshold notices the new values call for (each once: a Cassandra claim,
   the message, then the claim marked sent).
5. Commit the consumer offsets, only after 3 and 4 (the failpoint ``mirror.after-write``
   kills the worker between them in tests).

A crash anywhere before 5 replays a suffix; the replayed writes carry the same versions
and the notices the same message ids, so after any fault Cassandra converges to the
changelog's values and no notice is lost.
"""

from __future__ import annotations

import logging
import signal
import time
from datetime import UTC, date, datetime
from decimal import Decimal

from confluent_kafka import Consumer, KafkaException
from prometheus_client import Gauge

from processors.kafka.config import client_config
from processors.kafka.invalid import DECODE_ERRORS, DeadLetters, invalid_record, where
from processors.kafka.messages import data_messages
from processors.kafka.offsets import consumer_lag
from processors.kafka.retry import with_retries
from processors.kafka.transactions import idempotent_producer
from processors.runtime.failpoints import failpoint
from processors.runtime.settings import Settings
from processors.tenants.follower import follow_admin
from processors.usage.core.thresholds import parse_thresholds
from processors.usage.mirror_table import UsageTable
from processors.usage.threshold_ledger import ThresholdLedger
from processors.usage.threshold_notices import ThresholdNotices
from schemas import counter_changelog_v1 as changelog
from schemas.counter_changelog_v1 import CounterKey
from schemas.topics import ADMIN, COUNTER_CHANGELOG, MIRROR_GROUP, WEBHOOK_EVENTS
from storage.cassandra import connect

log = logging.getLogger(__name__)

MIRROR_LAG = Gauge("meterly_mirror_lag_records",
                   "Changelog records not yet mirrored to Cassandra")


class MirrorWorker:
    def __init__(self, settings: Settings) -> None:
        assert settings.kafka_bootstrap
        assert settings.cassandra_hosts
        self.topic = COUNTER_CHANGELOG.full_name(settings.topic_prefix)
        self.consumer = Consumer({
            **client_config(settings.kafka_bootstrap),
            "group.id": f"{settings.topic_prefix}{MIRROR_GROUP}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        })
        self.cluster, session = connect(settings.cassandra_hosts,
                                        security=settings.cassandra_security)
        self.table = UsageTable(session, settings.cassandra_keyspace)
        directory, self.admin_topic = follow_admin(settings.kafka_bootstrap,
                                                   ADMIN.full_name(settings.topic_prefix))
        self.notices = ThresholdNotices(
            directory, ThresholdLedger(session, settings.cassandra_keyspace),
            idempotent_producer(settings.kafka_bootstrap),
            WEBHOOK_EVENTS.full_name(settings.topic_prefix),
            parse_thresholds(settings.usage_thresholds))
        self.dead_letters = DeadLetters(settings.kafka_bootstrap, settings.topic_prefix,
                                        "mirror")
        self._stop = False
        self._lag_at = 0.0

    def stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        self.admin_topic.start()
        self.consumer.subscribe([self.topic])
        try:
            while not self._stop:
                messages = self.consumer.consume(num_messages=5000, timeout=0.1)
                latest: dict[CounterKey, tuple[int, Decimal, int]] = {}
                daily: dict[tuple[str, str, str, date], tuple[int, Decimal, int]] = {}
                sequences: dict[changelog.SequenceKey, tuple[changelog.SequenceState, int]] = {}
                groups: dict[changelog.GroupKey, tuple[changelog.GroupValue, int]] = {}
                for msg in data_messages(messages):
                    key, value, offset = msg.key(), msg.value(), msg.offset()
                    if key is not None and key[:1] == changelog.SEQUENCE and value is not None:
                        if offset is None:
                            raise RuntimeError("changelog record without offset")
                        try:
                            skey, state = changelog.parse_sequence(key, value)
                        except DECODE_ERRORS as exc:
                            invalid_record(COUNTER_CHANGELOG, where(msg), exc,
                                           self.dead_letters.of(msg))
                            continue
                        sequences[skey] = (state, offset)
                        continue
                    if key is not None and key[:1] == changelog.GROUP and value is not None:
                        if offset is None:
                            raise RuntimeError("changelog record without offset")
                        try:
                            gkey, gvalue = changelog.parse_group(key, value)
                        except DECODE_ERRORS as exc:
                            invalid_record(COUNTER_CHANGELOG, where(msg), exc,
                                           self.dead_letters.of(msg))
                            continue
                        groups[gkey] = (gvalue, offset)
                        continue
                    if key is None or key[:1] != changelog.COUNTER or value is None:
                        continue
                    if offset is None:
                        raise RuntimeError("changelog record without offset")
                    try:
                        ckey, count, total = changelog.parse_counter(key, value)
                    except DECODE_ERRORS as exc:
                        invalid_record(COUNTER_CHANGELOG, where(msg), exc,
                                       self.dead_letters.of(msg))
                        continue
                    latest[ckey] = (count, total, offset)
                    # The record's own time: a replay files it under the same day.
                    day = datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC).date()
                    daily[(*ckey, day)] = (count, total, offset)
                if latest:
                    self.table.write(latest)
                    self.table.write_daily(daily)
                    # Before the offsets are committed: a crash sends a notice again, never
                    # not at all (receivers drop the repeat by its webhook-id).
                    self.notices.check(latest)
                if sequences:
                    self.table.write_sequences(sequences)
                if groups:
                    self.table.write_groups(groups)
                if latest or groups:
                    failpoint("mirror.after-write")  # written, offsets not committed
                if messages:
                    self.dead_letters.flush()  # kept before the offsets move past them
                    with_retries(lambda: self.consumer.commit(asynchronous=False),
                                 "mirror offset commit")
                self._report_lag()
        finally:
            self.consumer.close()
            self.admin_topic.stop()
            self.cluster.shutdown()

    def _report_lag(self) -> None:
        try:
            self._measure_lag()
        except KafkaException as exc:
            # A metric must never stop the mirror (a broker may be restarting).
            log.warning("could not measure mirror lag: %s", exc)

    def _measure_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < 5:
            return
        self._lag_at = now
        assigned = self.consumer.assignment()
        if not assigned:
            return
        MIRROR_LAG.set(consumer_lag(self.consumer, assigned, timeout=5))


def run_worker(settings: Settings) -> None:
    worker = MirrorWorker(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _s, _f: worker.stop())
    worker.run()
