"""Identities are forgotten after their expiry: tombstoned in the changelog, dropped locally."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Producer

from ops.topics import ensure_topics
from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from processors.usage.core.periods import day_number, period_of_ms
from processors.usage.counter import GROUP
from schemas import counter_changelog_v1 as changelog
from schemas import usage_v1
from schemas.topics import COUNTER_CHANGELOG, USAGE
from schemas.usage_v1 import UsageEvent, UsageRecord
from tests.kafka_helpers import read_all_records
from tests.usage_load import WorkerProcess, changelog_totals, group_lag, wait_for, worker_env

pytestmark = pytest.mark.integration


def test_expired_identities_are_tombstoned_and_forgotten(settings: Settings,
                                                          tmp_path: Path) -> None:
    prefix = f"{settings.topic_prefix}e{secrets.token_hex(3)}."
    scoped = settings.model_copy(update={"topic_prefix": prefix})
    bootstrap = scoped.kafka_bootstrap
    assert bootstrap
    ensure_topics(bootstrap, prefix, 1)
    usage, log_topic = USAGE.full_name(prefix), COUNTER_CHANGELOG.full_name(prefix)
    env = {**worker_env(scoped, tmp_path / "home", "1"), "METERLY_DEDUPE_SWEEP_SECONDS": "1"}
    worker = WorkerProcess("counter", env, tmp_path / "counter.log")
    old_ms = int((datetime.now(UTC) - timedelta(days=80)).timestamp() * 1000)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    old = UsageRecord("t-old", tuple(UsageEvent(f"o{i}", "s", "m", old_ms, Decimal(1))
                                     for i in range(50)))
    new = UsageRecord("t-new", tuple(UsageEvent(f"n{i}", "s", "m", now_ms, Decimal(1))
                                     for i in range(50)))
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True})

    def send(record: UsageRecord) -> None:
        producer.produce(usage, usage_v1.encode(record), key=record.tenant.encode())
        assert producer.flush(30) == 0
        wait_for(lambda: group_lag(bootstrap, f"{prefix}{GROUP}", usage) == 0, 60,
                 "the counter to consume the record")

    worker.start()
    try:
        send(old)
        send(new)
        today = day_number(datetime.now(UTC))

        def seen_records() -> tuple[dict[bytes, int], set[bytes]]:
            latest: dict[bytes, int] = {}
            tombstoned: set[bytes] = set()
            for key, value in read_all_records(bootstrap, log_topic):
                if key[:1] != changelog.SEEN:
                    continue
                if value is None:
                    tombstoned.add(key)
                else:
                    latest[key] = max(day for _h, day in changelog.parse_seen(value))
            return latest, tombstoned

        wait_for(lambda: any(seen_records()[1]), 30, "a tombstone for the expired identities")
        latest, tombstoned = seen_records()
        assert {k for k, day in latest.items() if day < today} == tombstoned
        assert any(day >= today for day in latest.values()), "current ids must be kept"

        # Forgotten means forgotten: the old identities count again if they come back
        # (the gateway refuses such event times; this writes to Kafka directly).
        send(old)
        send(new)
        # No wait needed: send() returned at group lag 0, and the counter commits its
        # offsets in the transaction that writes the changelog (read_committed below).
        totals = changelog_totals(bootstrap, log_topic)
        assert totals[("t-old", period_of_ms(old_ms), "m")][0] == 100
        assert totals[("t-new", period_of_ms(now_ms), "m")][0] == 50
        assert worker.alive(), worker.log.read_text()[-2000:]
    finally:
        worker.stop()
