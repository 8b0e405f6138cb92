"""Apache Kafka in KRaft mode (no ZooKeeper): one node, or three for fault tests.

Every node is both broker and controller. Node ``i`` listens on ``base_port + 2(i-1)``
for clients and on the next port for the controller quorum, all on 127.0.0.1.
"""

from __future__ import annotations

import base64
import functools
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from ops.infra.artifacts import ProvisioningError, tail
from ops.infra.java import java_executable
from ops.infra.process import Service, port_open
from processors.kafka.config import client_config


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    host: str
    port: int
    controller_port: int

    @property
    def name(self) -> str:
        return f"kafka-{self.node_id}"


def kafka_nodes(count: int, base_port: int = 9092, host: str = "127.0.0.1") -> list[KafkaNode]:
    return [
        KafkaNode(i, host, base_port + 2 * (i - 1), base_port + 2 * (i - 1) + 1)
        for i in range(1, count + 1)
    ]


def bootstrap(nodes: list[KafkaNode]) -> str:
    return ",".join(f"{n.host}:{n.port}" for n in nodes)


def server_properties(node: KafkaNode, nodes: list[KafkaNode], log_dir: Path) -> str:
    replication = min(3, len(nodes))
    min_isr = 2 if replication >= 3 else 1
    voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes)
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.host}:{node.port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "4",
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "16",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "16",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        # Faust and the counting path create their topics explicitly; a typo must fail.
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())


_LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding, never starting with '-'.

    A leading '-' would be read as an option by the storage tool's argument parser (Kafka's
    own ``Uuid.randomUuid`` avoids it for the same reason).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_ready(bootstrap_servers: str, expected_brokers: int) -> bool:
    """True when the cluster answers metadata requests with every broker registered."""
    from confluent_kafka.admin import AdminClient

    first = bootstrap_servers.split(",")[0]
    host, _, port = first.rpartition(":")
    if not port_open(host, int(port)):
        return False
    admin = AdminClient({**client_config(bootstrap_servers), "log_level": 0})
    try:
        meta = admin.list_topics(timeout=3)
    except Exception:  # noqa: BLE001 - any failure here means "not ready yet"
        return False
    return len(meta.brokers) >= expected_brokers


def services(
    lib: Path, state: Path, logs: Path, run: Path, nodes: list[KafkaNode], heap: str
) -> list[Service]:
    """One Service per node; formats each node's log directory on first use."""
    import subprocess

    java = java_executable()
    conf_dir = state / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    log4j = conf_dir / "log4j2.properties"
    log4j.write_text(_LOG4J2)
    cluster_id_file = state / "cluster.id"
    if not cluster_id_file.exists():
        cluster_id_file.write_text(new_cluster_id())
    cluster_id = cluster_id_file.read_text().strip()
    result = []
    for node in nodes:
        data = state / node.name / "data"
        props = conf_dir / f"{node.name}.properties"
        props.write_text(server_properties(node, nodes, data))
        classpath = f"{lib}/*"
        log = logs / f"{node.name}.log"
        if not (data / "meta.properties").exists():
            data.mkdir(parents=True, exist_ok=True)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as out:
                formatted = subprocess.run(
                    [java, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
                     "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                     "-c", str(props)],
                    stdout=out, stderr=subprocess.STDOUT, check=False,
                )
            if formatted.returncode != 0:
                raise ProvisioningError(
                    f"formatting {node.name}'s log directory failed; last lines of {log}:\n"
                    f"{tail(log)}")
        marker = f"-Dmeterly.service={node.name}@{state}"
        bootstrap_one = f"{node.host}:{node.port}"
        result.append(
            Service(
                name=node.name,
                argv=[
                    java, marker, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
                    "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
                    f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={logs}",
                    "-cp", classpath, "kafka.Kafka", str(props),
                ],
                workdir=state / node.name,
                log=log,
                pidfile=run / f"{node.name}.pid",
                marker=marker,
                ports=[(node.host, node.port), (node.host, node.controller_port)],
                ready=functools.partial(kafka_ready, bootstrap_one, len(nodes)),
            )
        )
    return result


logging.getLogger("confluent_kafka").setLevel(logging.ERROR)
