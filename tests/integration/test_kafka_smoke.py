"""The broker is a real Kafka: transactions, read_committed isolation, restarts that keep data."""

from __future__ import annotations

import pytest

from processors.runtime.settings import Settings
from tests.infra import Infra
from tests.kafka_helpers import new_topic, producer, read_all

pytestmark = pytest.mark.integration


def test_aborted_transaction_is_invisible_to_read_committed(settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap
    assert bootstrap
    topic = new_topic(bootstrap, settings.topic_prefix)
    p = producer(bootstrap, **{"transactional.id": f"{topic}-tx"})
    p.init_transactions(30)

    p.begin_transaction()
    p.produce(topic, b"committed-1")
    p.commit_transaction(30)

    p.begin_transaction()
    p.produce(topic, b"aborted")
    p.flush(30)
    p.abort_transaction(30)

    p.begin_transaction()
    p.produce(topic, b"committed-2")
    p.commit_transaction(30)

    assert read_all(bootstrap, topic, "read_committed") == [b"committed-1", b"committed-2"]
    # The aborted record did reach the log: only isolation hides it.
    assert read_all(bootstrap, topic, "read_uncommitted") == [
        b"committed-1", b"aborted", b"committed-2",
    ]


def test_kafka_restart_keeps_committed_records(infra: Infra, settings: Settings) -> None:
    if infra.kind == "external":
        pytest.skip("the suite does not restart external clusters")
    bootstrap = settings.kafka_bootstrap
    assert bootstrap
    topic = new_topic(bootstrap, settings.topic_prefix, partitions=2)
    p = producer(bootstrap)
    values = [f"before-{i}".encode() for i in range(100)]
    for i, value in enumerate(values):
        p.produce(topic, value, key=str(i % 7).encode())
    assert p.flush(30) == 0

    infra.restart("kafka")

    assert sorted(read_all(bootstrap, topic)) == sorted(values)
    # The restarted broker takes new writes too.
    p2 = producer(bootstrap)
    p2.produce(topic, b"after")
    assert p2.flush(30) == 0
    assert sorted(read_all(bootstrap, topic)) == sorted([*values, b"after"])
