"""The counting worker: usage records in, exact per-tenant counters out, in one transaction.

Why not a Faust agent: faust-streaming 0.15.3 lost events when partitions moved between two
workers (about a third of runs, see docs/architecture.md), while a Kafka transaction that
carries both the state changes and the consumed offsets cannot commit one without the other.

The exactly-once argument, step by step (every crash test names the step it attacks):

1. A batch of usage records is consumed (read_committed) from the partitions this worker
   owns. Nothing is written anywhere yet.
2. The batch is folded (``processors.usage.core.counting``): identities already in the partition's
   store or earlier in the batch are duplicates; the rest add to the counters.
3. In one Kafka transaction: the new absolute counters (and defined meters' groups, ``M``
   records) and the batch's new identities (and unique_count members) are written to the
   changelog partition of each source partition, and the consumer's next
   offsets are added with the group's metadata (KIP-447, so a worker that lost the
   partition in a rebalance is fenced and its transaction aborts).
4. The transaction commits. Before this, a crash aborts everything: the batch is consumed
   again from the last committed offsets against state that never saw it.
5. After the commit, the changes go to the local store with the next changelog offset
   (``processors.usage.partition_store``). A crash before that replays the changelog tail.
6. On taking a partition over, the worker first fetches the partition's committed offset
   (which waits for any transaction carrying offsets to finish), then reads the changelog
   partition from its local checkpoint up to the high watermark read after that. Reading
   past the high watermark with read_committed also waits out a dead owner's open
   transaction, which aborts at its timeout or when a producer with the same
   transactional id starts.

A usage record the worker cannot decode is written, unchanged, to ``invalid-records.v1``
in step 3's transaction (``processors.kafka.invalid``), and a changelog record it cannot
restore in step 6 is written there before the local checkpoint moves past it: no record
stops counting.

Any error in a transaction ends the process; the supervisor restarts it and step 6 rebuilds.
Tests kill the worker at named steps (``processors.runtime.failpoints``):
``counter.before-commit`` (3 done, 4 not), ``counter.after-commit`` (4 done, 5 not) and
``counter.restoring`` (in 6, after 50 changelog records of a partition).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from prometheus_client import Counter as Total
from prometheus_client import Gauge

from processors.kafka.config import client_config
from processors.kafka.invalid import DECODE_ERRORS, DeadLetters, invalid_record, where
from processors.kafka.messages import correlation_ids, data_messages
from processors.kafka.offsets import consumer_lag
from processors.kafka.retry import with_retries
from processors.kafka.transactions import (
    commit_or_rewind,
    exit_for_restart,
    transactional_producer,
)
from processors.runtime.failpoints import failpoint
from processors.runtime.settings import Settings
from processors.usage.core.counting import Counter, Fold, Group, apply, apply_groups
from processors.usage.core.periods import day_number
from processors.usage.core.sequences import gap_message_id
from processors.usage.partition_store import PartitionStore, group_value
from schemas import counter_changelog_v1 as changelog
from schemas import usage_v1, webhooks_v1
from schemas.counter_changelog_v1 import CounterKey, GroupKey
from schemas.rfc3339 import now_text
from schemas.topics import COUNTER_CHANGELOG, COUNTER_GROUP, USAGE, WEBHOOK_EVENTS

log = logging.getLogger(__name__)
GAPS_OPENED = Total("meterly_usage_sequence_gaps_opened",
                    "ranges of missing sequence numbers opened by producers (usage.gap_detected)")
NUMBERS_FILLED = Total("meterly_usage_sequence_numbers_filled",
                       "missing sequence numbers that arrived later")
COUNTER_LAG = Gauge("meterly_counter_lag_records",
                    "usage records the counting worker has not counted yet")

GROUP = COUNTER_GROUP
#: Seen-ids records forgotten per partition in one sweep step (each holds up to
#: ``changelog.SEEN_CHUNK`` identities).
SWEEP_RECORDS = 20
BATCH_RECORDS = 500


@dataclass
class _Batch:
    """One partition's share of a consumed batch."""

    first_offset: int
    records: list[usage_v1.UsageRecord] = field(default_factory=list)


@dataclass
class _Progress:
    """Counts for a periodic log line, so an operator sees the worker move."""

    records: int = 0
    counted: int = 0
    duplicates: int = 0
    since: float = field(default_factory=time.monotonic)

    def add(self, folds: Iterable[Fold], records: int) -> None:
        self.records += records
        for fold in folds:
            self.counted += fold.counted
            self.duplicates += fold.duplicates
        now = time.monotonic()
        if now - self.since >= 5:
            log.info("committed %d records: %d events counted, %d duplicates in %.1fs",
                     self.records, self.counted, self.duplicates, now - self.since,
                     extra={"records": self.records, "counted": self.counted,
                            "duplicates": self.duplicates})
            self.records = self.counted = self.duplicates = 0
            self.since = now


class CountingWorker:
    def __init__(self, settings: Settings, worker_id: str) -> None:
        assert settings.kafka_bootstrap
        self.settings = settings
        self.source = USAGE.full_name(settings.topic_prefix)
        self.changelog = COUNTER_CHANGELOG.full_name(settings.topic_prefix)
        self.webhooks = WEBHOOK_EVENTS.full_name(settings.topic_prefix)
        self.state_dir = settings.home / "state" / f"{settings.topic_prefix}counter-{worker_id}"
        self.stores: dict[int, PartitionStore] = {}
        self._stop = False
        self._offsets: dict[int, int] = {}
        self._progress = _Progress()
        self.bootstrap = bootstrap = settings.kafka_bootstrap
        self.consumer = Consumer({
            **client_config(bootstrap),
            "group.id": f"{settings.topic_prefix}{GROUP}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",
            # Static membership: a restarted worker takes its partitions back at once
            # instead of waiting for its dead predecessor's session to time out.
            "group.instance.id": f"counter-{worker_id}",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "max.poll.interval.ms": 120_000,
            # Bounded prefetch: librdkafka would otherwise queue up to 64 MiB of records.
            "queued.max.messages.kbytes": 16 * 1024,
            "fetch.max.bytes": 8 * 2**20,
        })
        self.producer = transactional_producer(
            bootstrap, f"{settings.topic_prefix}counter-{worker_id}",
            on_delivery=self._delivered,
        )
        self.dead_letters = DeadLetters(bootstrap, settings.topic_prefix, "counter")

    # Kafka callbacks ---------------------------------------------------------------------

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        # Changelog records only: the transaction also carries webhook messages and dead
        # letters, whose offsets are no changelog checkpoint.
        partition, offset = msg.partition(), msg.offset()
        if (err is None and msg.topic() == self.changelog and partition is not None
                and offset is not None and offset > self._offsets.get(partition, -1)):
            self._offsets[partition] = offset

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        begun = time.monotonic()
        # Partitions added while running reach here as a rebalance: refuse them too.
        self._check_copartitioned()
        # Step 6: committed offsets first; with read_committed this waits until no
        # transaction carrying offsets for these partitions is still open.
        with_retries(lambda: consumer.committed(partitions, timeout=60),
                     "committed offsets of the assigned partitions")
        for tp in partitions:
            self.stores[tp.partition] = self._restore(tp.partition)
        log.info("assigned partitions %s, restored in %.2fs",
                 [tp.partition for tp in partitions], time.monotonic() - begun)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            store = self.stores.pop(tp.partition, None)
            if store is not None:
                store.close()
        log.info("revoked partitions %s", [tp.partition for tp in partitions])

    def _restore(self, partition: int) -> PartitionStore:
        store = PartitionStore(self.state_dir / f"p{partition}")
        reader = Consumer({
            **client_config(self.bootstrap),
            "group.id": f"{self.settings.topic_prefix}{GROUP}-restore",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 2**20,
        })
        try:
            tp = TopicPartition(self.changelog, partition)
            low, high = with_retries(
                lambda: reader.get_watermark_offsets(tp, timeout=30, cached=False),
                f"changelog partition {partition} watermarks")
            if store.checkpoint > high:
                raise RuntimeError(
                    f"local state of partition {partition} is ahead of the changelog "
                    f"({store.checkpoint} > {high}); was the changelog topic recreated? "
                    f"Remove {store.path} to rebuild from the changelog"
                )
            start = max(store.checkpoint, low)
            reader.assign([TopicPartition(self.changelog, partition, start)])
            applied, next_offset = 0, start
            while next_offset < high:
                if self._stop:
                    raise SystemExit(0)
                messages = reader.consume(num_messages=10_000, timeout=0.5)
                for msg in messages:
                    if msg.error():
                        raise KafkaException(msg.error())
                    key, offset = msg.key(), msg.offset()
                    if key is None or offset is None:
                        raise RuntimeError("changelog record without key or offset")
                    try:
                        store.restore(key, msg.value(), offset)
                    except DECODE_ERRORS as exc:
                        invalid_record(COUNTER_CHANGELOG, where(msg), exc,
                                       self.dead_letters.of(msg))
                    next_offset = offset + 1
                    applied += 1
                    if applied == 50:
                        failpoint("counter.restoring")  # step 6, part way through
                if not messages:
                    # Transaction markers and aborted records are never delivered; the
                    # position moves past them.
                    next_offset = max(next_offset, reader.position([tp])[0].offset)
            self.dead_letters.flush()  # kept before the checkpoint moves past them
            store.flush_restore(checkpoint=high)
            if applied:
                log.info("partition %d: %d changelog records replayed", partition, applied)
            return store
        finally:
            reader.close()

    # The loop ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop = True

    def _check_copartitioned(self) -> None:
        """Refuse to count unless usage and changelog have exactly the defined partition
        count: a partition added to either moves keys (a tenant's counters and remembered
        ids) to partitions whose state never saw them, which would count twice."""
        topics = self.consumer.list_topics(timeout=30).topics
        counts = {t: len(topics[t].partitions) if t in topics else 0
                  for t in (self.source, self.changelog)}
        if set(counts.values()) != {USAGE.partitions}:
            raise RuntimeError(
                f"{self.source} and {self.changelog} must both have {USAGE.partitions} "
                f"partitions, as schemas/topics.py defines them; found {counts}. Changing "
                "the partition count would move tenants to partitions whose counters and "
                "remembered ids never saw them, so the counter does not start")

    def run(self) -> None:
        self._check_copartitioned()
        self.producer.init_transactions(60)
        self.consumer.subscribe(
            [self.source], on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        sweep_every = self.settings.dedupe_sweep_seconds
        last_sweep = last_lag = time.monotonic()
        while not self._stop:
            messages = self.consumer.consume(num_messages=BATCH_RECORDS, timeout=0.1)
            if messages:
                self._process(messages)
            if time.monotonic() - last_lag >= 5:
                last_lag = time.monotonic()
                self._report_lag()
            if self.stores and time.monotonic() - last_sweep >= sweep_every:
                more = self._sweep()
                # A bounded step at a time between polls; the rest at the next turn.
                last_sweep = time.monotonic() - (sweep_every if more else 0)
        # Only on a clean stop: a consumer in a fatal state (fenced) can block in close().
        self.consumer.close()
        for store in self.stores.values():
            store.close()

    def _report_lag(self) -> None:
        assigned = self.consumer.assignment()
        if not assigned:
            return
        try:
            COUNTER_LAG.set(consumer_lag(self.consumer, assigned, timeout=5))
        except KafkaException as exc:
            # A metric must never stop counting (a broker may be restarting).
            log.warning("could not measure the counter's lag: %s", exc)

    def _process(self, messages: list[Message]) -> None:
        batches: dict[int, _Batch] = {}
        unreadable: list[tuple[Message, usage_v1.RecordError]] = []
        for msg in data_messages(messages):
            partition, offset, value = msg.partition(), msg.offset(), msg.value()
            if partition is None or offset is None:
                raise RuntimeError("usage record without partition or offset")
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = _Batch(offset)
            try:
                if value is None:
                    raise usage_v1.RecordError("a usage record without a value")
                batch.records.append(usage_v1.decode(value))
            except usage_v1.RecordError as exc:
                # Dead-lettered in this batch's transaction (below), so it is kept exactly
                # when the offsets move past it.
                unreadable.append((msg, exc))
        folds: dict[int, Fold] = {}
        for partition, batch in batches.items():
            store = self.stores[partition]
            fold = Fold(grace=timedelta(seconds=self.settings.grace_seconds),
                        sequence_of=store.sequences.get)
            for record in batch.records:
                fold.add(record, store.knows_many)
            folds[partition] = fold

        self._offsets.clear()
        self.producer.begin_transaction()
        for msg, error in unreadable:
            invalid_record(USAGE, where(msg), error, self.dead_letters.of(msg, self.producer))
        changed_by_partition: dict[int, dict[CounterKey, Counter]] = {}
        groups_by_partition: dict[int, dict[GroupKey, Group]] = {}
        seen_records: dict[int, list[tuple[bytes, int, list[bytes]]]] = {}
        for partition, fold in folds.items():
            store = self.stores[partition]
            # Absolute values computed against a copy: the store changes only after commit.
            counters = {k: store.counters[k] for k in fold.increments if k in store.counters}
            changed = apply(counters, fold)
            changed_by_partition[partition] = changed
            groups = {k: store.groups[k] for k in fold.groups if k in store.groups}
            groups_by_partition[partition] = apply_groups(groups, fold)
            seen_records[partition] = []
            for chunk, start in enumerate(range(0, len(fold.new_ids), changelog.SEEN_CHUNK)):
                entries = fold.new_ids[start:start + changelog.SEEN_CHUNK]
                seen = changelog.seen_key(batches[partition].first_offset, chunk)
                self.producer.produce(self.changelog, partition=partition, key=seen,
                                      value=changelog.seen_value(entries))
                seen_records[partition].append((seen, max(day for _h, day in entries),
                                                [h for h, _day in entries]))
            for key, counter in changed.items():
                self.producer.produce(
                    self.changelog, partition=partition, key=changelog.counter_key(key),
                    value=changelog.counter_value(counter.count, counter.total),
                )
            for gkey, group in groups_by_partition[partition].items():
                self.producer.produce(
                    self.changelog, partition=partition, key=changelog.group_key(gkey),
                    value=changelog.group_value(group_value(group)))
            self._produce_sequences(partition, fold)
        failpoint("counter.before-commit")  # step 3 written, step 4 not reached
        # Serves the delivery reports too, which carry the changelog offsets for step 5.
        if not commit_or_rewind(self.producer, self.consumer):
            return
        failpoint("counter.after-commit")  # step 4 done, step 5 not
        if log.isEnabledFor(logging.DEBUG):
            log.debug("usage counted", extra={
                "records": len(messages), "correlation_ids": correlation_ids(messages)})
        self._progress.add(folds.values(), len(messages))
        for partition, fold in folds.items():
            next_offset = self._offsets.get(partition, -1) + 1
            self.stores[partition].committed(
                changed_by_partition[partition], fold.new_ids, next_offset,
                seen_records[partition], fold.sequences.states,
                groups_by_partition[partition],
            )
            GAPS_OPENED.inc(len(fold.sequences.opened))
            NUMBERS_FILLED.inc(fold.sequences.filled)

    def _produce_sequences(self, partition: int, fold: Fold) -> None:
        """Step 2, for producers' sequence numbers: the new states to the changelog, and a
        ``usage.gap_detected`` webhook message per range opened, in the same transaction
        (so a gap is announced exactly when its state commits)."""
        for key, state in fold.sequences.states.items():
            self.producer.produce(self.changelog, partition=partition,
                                  key=changelog.sequence_key(key),
                                  value=changelog.sequence_value(state.as_tuple()))
        now = now_text()
        for tenant, source, first, last in fold.sequences.opened:
            state = fold.sequences.states[(tenant, source)]
            message = webhooks_v1.Message(
                gap_message_id(tenant, source, first, last), webhooks_v1.USAGE_GAP, tenant,
                now, {"tenant_id": tenant, "source": source, "first_missing": first,
                      "last_missing": last, "missing": last - first + 1,
                      "open_gaps": len(state.gaps), "missing_in_source": state.missing})
            self.producer.produce(self.webhooks, webhooks_v1.encode_message(message),
                                  key=tenant.encode())

    def _sweep(self) -> bool:
        """Forget identities past their expiry (35 days after the event and past its
        period's close plus grace; ``processors.usage.core.periods``): tombstone their
        seen-ids records in the changelog, in a transaction, then drop them from the local
        stores. By then the gateway and the ingest validator refuse those event times, so a
        resend cannot be counted again through them. At most ``SWEEP_RECORDS`` records per
        partition at a time, so the poll loop is never held for long; returns whether more
        are due."""
        today = day_number(datetime.now(UTC))
        expired = {p: s.expired_records(today, SWEEP_RECORDS) for p, s in self.stores.items()}
        expired = {p: keys for p, keys in expired.items() if keys}
        if not expired:
            return False
        self.producer.begin_transaction()
        for partition, keys in expired.items():
            for key in keys:
                self.producer.produce(self.changelog, partition=partition, key=key, value=None)
        if not commit_or_rewind(self.producer, self.consumer):
            return False
        for partition, keys in expired.items():
            dropped = self.stores[partition].forget(keys, today)
            log.info("partition %d: forgot %d expired identities (%d records)", partition,
                     dropped, len(keys))
        return any(len(keys) >= SWEEP_RECORDS for keys in expired.values())


def run_worker(settings: Settings) -> None:
    worker = CountingWorker(settings, settings.worker_id)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _s, _f: worker.stop())
    exit_for_restart(worker.run)

