"""Rebuild the Cassandra usage mirror from the counter changelog (``meterly mirror rebuild``):
the counters of ``usage_by_period`` and the defined meters' groups of ``usage_groups``.

The changelog is compacted, so it holds the latest value of every counter; reading it from
the beginning and writing each value versioned by its offset (as the mirror worker does)
brings Cassandra to the changelog's state. It is safe while the mirror worker runs: a write
with an older version never replaces a newer one. Use it after losing the Cassandra data, or
to fill a new keyspace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from processors.kafka.compacted_topic import read_to_end, reader, total_records
from processors.kafka.invalid import DECODE_ERRORS, DeadLetters, invalid_record, where
from processors.runtime.settings import Settings
from processors.usage.mirror_table import UsageTable
from schemas import counter_changelog_v1 as changelog
from schemas.counter_changelog_v1 import CounterKey
from schemas.topics import COUNTER_CHANGELOG
from storage.cassandra import connect

#: Counters held in memory before they are written (bounds memory on huge changelogs).
FLUSH_EVERY = 50_000


def rebuild_mirror(settings: Settings, progress: Callable[[str], None]) -> int:
    """Write every counter of the changelog to ``usage_by_period``; return how many."""
    assert settings.kafka_bootstrap
    assert settings.cassandra_hosts
    topic = COUNTER_CHANGELOG.full_name(settings.topic_prefix)
    consumer = reader(settings.kafka_bootstrap, "mirror-rebuild")
    cluster, session = connect(settings.cassandra_hosts, security=settings.cassandra_security)
    table = UsageTable(session, settings.cassandra_keyspace)
    dead_letters = DeadLetters(settings.kafka_bootstrap, settings.topic_prefix,
                               "mirror-rebuild")
    try:
        total = total_records(consumer, topic)
        latest: dict[CounterKey, tuple[int, Decimal, int]] = {}
        groups: dict[changelog.GroupKey, tuple[changelog.GroupValue, int]] = {}
        read = written = 0
        reported = time.monotonic()
        for messages in read_to_end(consumer, topic):
            for msg in messages:
                read += 1
                key, value, offset = msg.key(), msg.value(), msg.offset()
                if key is None or value is None or offset is None:
                    continue
                if key[:1] == changelog.GROUP:
                    try:
                        gkey, gvalue = changelog.parse_group(key, value)
                    except DECODE_ERRORS as exc:
                        invalid_record(COUNTER_CHANGELOG, where(msg), exc, dead_letters.of(msg))
                        continue
                    groups[gkey] = (gvalue, offset)
                    continue
                if key[:1] != changelog.COUNTER:
                    continue
                try:
                    ckey, count, quantity = changelog.parse_counter(key, value)
                except DECODE_ERRORS as exc:
                    invalid_record(COUNTER_CHANGELOG, where(msg), exc, dead_letters.of(msg))
                    continue
                latest[ckey] = (count, quantity, offset)
            if len(latest) >= FLUSH_EVERY:
                table.write(latest)
                written += len(latest)
                latest.clear()
            if len(groups) >= FLUSH_EVERY:
                table.write_groups(groups)
                written += len(groups)
                groups.clear()
            if time.monotonic() - reported > 2:
                progress(f"read {read:,} of at most {total:,} changelog records, "
                         f"{written + len(latest):,} counters")
                reported = time.monotonic()
        if latest:
            table.write(latest)
            written += len(latest)
        if groups:
            table.write_groups(groups)
            written += len(groups)
        dead_letters.flush()
        skipped = f"; {dead_letters.sent} unreadable, dead-lettered" if dead_letters.sent else ""
        progress(f"read {read:,} changelog records; wrote {written:,} counters{skipped}")
        return written
    finally:
        consumer.close()
        cluster.shutdown()
