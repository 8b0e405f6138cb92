"""Cluster mode: three Kafka brokers and three Cassandra nodes, on their own ports and state
directory beside the session's single-node services.

The infrastructure itself, one node lost each (acks=all writes and QUORUM writes go on), and
Meterly on it: two billing workers close 600 tenants on topics replicated three times with
the keyspace at replication factor 3, so every number claim is a Paxos round across three
Cassandra nodes; one worker is SIGKILLed after both have numbered invoices, and the numbers
must still be 1..600 (``tests/integration/test_invoice_numbers.py`` does the same on one
node).
"""

from __future__ import annotations

import secrets
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cassandra import ConsistencyLevel
from cassandra.query import SimpleStatement
from confluent_kafka.admin import AdminClient

from ops.infra.stack import LocalStack, Ports
from ops.provision import prepare
from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from schemas.topics import BILLING_COMMANDS
from storage.cassandra import connect
from tests.infra import Infra, LocalInfra
from tests.kafka_helpers import new_topic, producer, read_all
from tests.numbering import check_kill_evidence, close_concurrently_with_a_kill
from tests.stack import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PORTS = Ports(kafka_base=19092, cassandra_native=19042, cassandra_storage=17000,
              cassandra_jmx_base=17199)


@pytest.fixture(scope="module")
def cluster(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if infra.kind != "local":
        pytest.skip("cluster mode is the locally provisioned path")
    settings = Settings()
    home: Path = tmp_path_factory.mktemp("cluster-home")
    # The session's credentials and CA, so this process's settings (Meterly's principal on
    # the single node) fit the cluster too.
    assert isinstance(infra, LocalInfra)
    shutil.copytree(infra.stack.credentials_file.parent, home / "infra",
                    ignore=shutil.ignore_patterns("single", "cluster"))
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
    c, session = connect(cluster.cassandra_hosts, request_timeout=15,
                          security=Settings().cassandra_security)
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


def test_gapless_numbers_on_the_three_node_cluster_with_a_billing_worker_killed(
        cluster: LocalStack, tmp_path: Path) -> None:
    """On the whole cluster, whatever the node-loss tests left down: ``up`` starts any node
    that is not running and waits for the Cassandra peers to see each other."""
    cluster.up()
    run = secrets.token_hex(3)
    scoped = Settings(kafka_bootstrap=cluster.kafka_bootstrap,
                      cassandra_hosts=cluster.cassandra_hosts,
                      topic_prefix=f"cluster-{run}.", cassandra_keyspace=f"cluster_{run}",
                      kafka_replication_factor=3,
                      cassandra_replication="{'class': 'SimpleStrategy', "
                                            "'replication_factor': 3}")
    prepare(scoped, cluster.kafka_bootstrap, cluster.cassandra_hosts)
    # Replicated three times, led by more than one broker: the cluster is in the path.
    topic = BILLING_COMMANDS.full_name(scoped.topic_prefix)
    meta = AdminClient(client_config(cluster.kafka_bootstrap)).list_topics(
        topic, timeout=30).topics[topic]
    assert all(len(p.replicas) == 3 for p in meta.partitions.values())
    assert len({p.leader for p in meta.partitions.values()}) > 1, meta.partitions
    c, session = connect(cluster.cassandra_hosts, request_timeout=15,
                          security=Settings().cassandra_security)
    try:
        wait_until("the driver to see three Cassandra nodes up", lambda: len(
            [h for h in c.metadata.all_hosts() if h.is_up]) == 3, timeout=60)
        tenants = [f"ten_{secrets.token_hex(6)}" for _ in range(600)]
        evidence = close_concurrently_with_a_kill(
            scoped, session, tmp_path, tenants, f"C{run.upper()}", timeout=360)
        check_kill_evidence(evidence)
    finally:
        c.shutdown()
