"""Topic definitions become real topics, idempotently, with their configuration."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from ops.topics import TopicMismatchError, ensure_topics
from processors.runtime.settings import Settings
from schemas.topics import ADMIN, ALL_TOPICS, USAGE, TopicSpec

pytestmark = pytest.mark.integration


def test_topics_exist_with_their_configuration(settings: Settings) -> None:
    assert settings.kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
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
