"""Cluster mode for fault tests: three Kafka brokers and three Cassandra nodes, one lost each.

Runs on its own ports and state directory beside the session's single-node services.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cassandra import ConsistencyLevel
from cassandra.query import SimpleStatement

from ops.infra.stack import LocalStack, Ports
from processors.runtime.settings import Settings
from storage.cassandra import connect
from tests.infra import Infra
from tests.kafka_helpers import new_topic, producer, read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PORTS = Ports(kafka_base=19092, cassandra_native=19042, cassandra_storage=17000,
              cassandra_jmx_base=17199)


@pytest.fixture(scope="module")
def cluster(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if infra.kind != "local":
        pytest.skip("cluster mode is the locally provisioned path")
    settings = Settings()
    home: Path = tmp_path_factory.mktemp("cluster-home")
    stack = LocalStack(home, settings.cache_dir, "cluster", PORTS, progress=print)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def test_three_brokers_keep_accepting_acks_all_writes_after_losing_one(
    cluster: LocalStack,
) -> None:
    bootstrap = cluster.kafka_bootstrap
    assert len(bootstrap.split(",")) == 3
    topic = new_topic(bootstrap, "cluster.", partitions=3, replication=3)
    p = producer(bootstrap)
    for i in range(300):
        p.produce(topic, f"a{i}".encode(), key=str(i).encode())
    assert p.flush(30) == 0

    assert cluster.kill("kafka-2")
    survivors = ",".join(b for b in bootstrap.split(",") if not b.endswith(":19094"))
    p2 = producer(survivors)
    for i in range(300):
        p2.produce(topic, f"b{i}".encode(), key=str(i).encode())
    assert p2.flush(60) == 0, "acks=all writes stalled with 2 of 3 replicas in sync"
    values = read_all(survivors, topic, timeout=60)
    assert sorted(values) == sorted([f"a{i}".encode() for i in range(300)]
                                    + [f"b{i}".encode() for i in range(300)])
    cluster.start_one("kafka-2")


def test_three_cassandra_nodes_take_quorum_writes_after_losing_one(cluster: LocalStack) -> None:
    c, session = connect(cluster.cassandra_hosts, request_timeout=15)
    try:
        hosts = {h.address for h in c.metadata.all_hosts()}
        assert hosts == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
        session.execute("CREATE KEYSPACE IF NOT EXISTS faults WITH replication = "
                        "{'class': 'SimpleStrategy', 'replication_factor': 3}")
        session.execute("CREATE TABLE IF NOT EXISTS faults.kv (k text PRIMARY KEY, v int)")
        insert = SimpleStatement("INSERT INTO faults.kv (k, v) VALUES (%s, %s)",
                                 consistency_level=ConsistencyLevel.QUORUM)
        key = str(uuid.uuid4())
        session.execute(insert, (key, 1))

        assert cluster.kill("cassandra-3")
        # A node's death is not noticed at once; writes may time out until it is.
        deadline, last_error = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                session.execute(insert, (key, 2))
                break
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last_error = exc
                time.sleep(1)
        else:
            raise AssertionError(f"no QUORUM write with 2 of 3 nodes up: {last_error}")
        select = SimpleStatement("SELECT v FROM faults.kv WHERE k=%s",
                                 consistency_level=ConsistencyLevel.QUORUM)
        assert session.execute(select, (key,)).one().v == 2
    finally:
        c.shutdown()
