"""Topic definitions become real topics, idempotently, with their configuration."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions

from ops.topics import TopicMismatchError, ensure_topics
from processors.kafka.compacted_topic import TopicFollower
from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from schemas.topics import ADMIN, ALL_TOPICS, INGEST, USAGE, TopicSpec
from tests.kafka_helpers import new_topic, producer
from tests.usage_load import worker_env

pytestmark = pytest.mark.integration


def test_topics_exist_with_their_configuration(settings: Settings) -> None:
    assert settings.kafka_bootstrap
    admin = AdminClient(client_config(settings.kafka_bootstrap))
    topics = admin.list_topics(timeout=10).topics
    for spec in ALL_TOPICS:
        name = spec.full_name(settings.topic_prefix)
        assert len(topics[name].partitions) == spec.partitions
    resources = [
        ConfigResource("topic", t.full_name(settings.topic_prefix)) for t in (ADMIN, USAGE)
    ]
    configs = {r.name: f.result(10) for r, f in admin.describe_configs(resources).items()}
    admin_cfg = configs[ADMIN.full_name(settings.topic_prefix)]
    usage_cfg = configs[USAGE.full_name(settings.topic_prefix)]
    assert admin_cfg["cleanup.policy"].value == "compact"
    assert usage_cfg["cleanup.policy"].value == "delete"
    assert usage_cfg["retention.ms"].value == str(USAGE.retention_ms)


def test_ensure_topics_is_idempotent(settings: Settings) -> None:
    assert settings.kafka_bootstrap
    assert ensure_topics(settings.kafka_bootstrap, settings.topic_prefix, 1) == []


def test_fewer_partitions_than_defined_is_refused(settings: Settings) -> None:
    assert settings.kafka_bootstrap
    narrow = TopicSpec("narrow.v1", 1, "delete", 1000, "test")
    ensure_topics(settings.kafka_bootstrap, settings.topic_prefix, 1, (narrow,))
    wider = TopicSpec("narrow.v1", 3, "delete", 1000, "test")
    with pytest.raises(TopicMismatchError, match="has 1 partitions"):
        ensure_topics(settings.kafka_bootstrap, settings.topic_prefix, 1, (wider,))


def test_more_partitions_than_defined_is_refused(settings: Settings) -> None:
    """Adding partitions moves keys to partitions that never held their state."""
    assert settings.kafka_bootstrap
    wide = TopicSpec("wide.v1", 3, "delete", 1000, "test")
    ensure_topics(settings.kafka_bootstrap, settings.topic_prefix, 1, (wide,))
    narrower = TopicSpec("wide.v1", 2, "delete", 1000, "test")
    with pytest.raises(TopicMismatchError, match="has 3 partitions"):
        ensure_topics(settings.kafka_bootstrap, settings.topic_prefix, 1, (narrower,))


def test_the_counter_refuses_usage_with_a_partition_added(settings: Settings,
                                                          tmp_path: Path) -> None:
    assert settings.kafka_bootstrap
    prefix = f"{settings.topic_prefix}p{secrets.token_hex(3)}."
    ensure_topics(settings.kafka_bootstrap, prefix, 1)
    admin = AdminClient(client_config(settings.kafka_bootstrap))
    usage = USAGE.full_name(prefix)
    for future in admin.create_partitions(
            [NewPartitions(usage, USAGE.partitions + 1)]).values():
        future.result(30)
    scoped = settings.model_copy(update={"topic_prefix": prefix})
    log = tmp_path / "counter.log"
    with log.open("wb") as out:
        done = subprocess.run([sys.executable, "-m", "ops.cli", "worker", "counter"],
                              env=worker_env(scoped, tmp_path / "home", "1"), stdout=out,
                              stderr=subprocess.STDOUT, timeout=120, check=False)
    assert done.returncode != 0
    assert f"must both have {USAGE.partitions} partitions" in log.read_text()


def test_the_ingest_topic_stamps_broker_time(settings: Settings) -> None:
    assert settings.kafka_bootstrap
    admin = AdminClient(client_config(settings.kafka_bootstrap))
    resource = ConfigResource("topic", INGEST.full_name(settings.topic_prefix))
    config = next(iter(admin.describe_configs([resource]).values())).result(10)
    assert config["message.timestamp.type"].value == "LogAppendTime"


def test_a_follower_catches_up_with_what_was_written_before_it_asked(
        settings: Settings) -> None:
    assert settings.kafka_bootstrap
    topic = new_topic(settings.kafka_bootstrap, settings.topic_prefix)
    seen: list[bytes] = []
    follower = TopicFollower(settings.kafka_bootstrap, topic,
                             lambda msg: seen.append(msg.value()), "catch-up-test")
    follower.start()
    try:
        writer = producer(settings.kafka_bootstrap)
        for i in range(50):
            writer.produce(topic, f"v{i}".encode())
        assert writer.flush(30) == 0
        assert follower.catch_up(10)
        assert len(seen) == 50  # applied before catch_up answered
    finally:
        follower.stop()
