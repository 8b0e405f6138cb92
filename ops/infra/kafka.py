"""Apache Kafka in KRaft mode (no ZooKeeper): one node, or three for fault tests, secured.

Every node is both broker and controller. Node ``i`` listens on ``base_port + 2(i-1)``
for clients (SASL_PLAINTEXT), on the next port for the controller quorum, and on the
client port + 100 for clients over TLS (SASL_SSL, the local CA of ``ops.infra.tls``), all
on 127.0.0.1. Nothing answers without authenticating:

- clients authenticate with SASL/SCRAM-SHA-512; the SCRAM users ``broker`` (inter-broker)
  and ``meterly`` (Meterly's own principal) are written into the metadata log when a node's
  log directory is formatted (``--add-scram``), since a KRaft cluster has no other place to
  bootstrap them from;
- the controller listener takes SASL/PLAIN with one static user, ``controller`` (KRaft
  cannot use SCRAM there: the controllers hold the SCRAM credentials themselves);
- ``StandardAuthorizer`` with no ACL meaning no access: ``broker``, ``controller`` and
  ``meterly`` are super users, and every other principal (an ingest producer's, made by
  ``meterly ingest credentials``) may do only what its ACLs grant.

The passwords are in ``ops.infra.credentials`` (``credentials.json``, 0600); the generated
``server.properties`` holds them too and is 0600 as well.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ops.infra.artifacts import ProvisioningError, tail
from ops.infra.credentials import (
    KAFKA_BROKER_USER,
    KAFKA_CONTROLLER_USER,
    KAFKA_MECHANISM,
    KAFKA_USER,
    LocalCredentials,
)
from ops.infra.java import java_executable
from ops.infra.process import Service, port_open
from ops.infra.tls import LocalTls
from processors.kafka.config import client_config

#: Written into the state directory before its first node is formatted with SCRAM users.
SECURED = "secured"
#: The TLS listener of a node is its client port plus this.
TLS_PORT_OFFSET = 100
_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    host: str
    port: int
    controller_port: int

    @property
    def name(self) -> str:
        return f"kafka-{self.node_id}"

    @property
    def tls_port(self) -> int:
        return self.port + TLS_PORT_OFFSET


def kafka_nodes(count: int, base_port: int = 9092, host: str = "127.0.0.1") -> list[KafkaNode]:
    return [
        KafkaNode(i, host, base_port + 2 * (i - 1), base_port + 2 * (i - 1) + 1)
        for i in range(1, count + 1)
    ]


def bootstrap(nodes: list[KafkaNode]) -> str:
    return ",".join(f"{n.host}:{n.port}" for n in nodes)


def tls_bootstrap(nodes: list[KafkaNode]) -> str:
    return ",".join(f"{n.host}:{n.tls_port}" for n in nodes)


def _jaas(module: str, **options: str) -> str:
    return f"{module} required " + " ".join(f'{k}="{v}"' for k, v in options.items()) + ";"


def server_properties(node: KafkaNode, nodes: list[KafkaNode], log_dir: Path,
                      credentials: LocalCredentials, tls: LocalTls) -> str:
    replication = min(3, len(nodes))
    min_isr = 2 if replication >= 3 else 1
    voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes)
    scram = KAFKA_MECHANISM.lower()
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"SASL_PLAINTEXT://{node.host}:{node.port},"
                     f"CONTROLLER://{node.host}:{node.controller_port},"
                     f"SASL_SSL://{node.host}:{node.tls_port}",
        "advertised.listeners": f"SASL_PLAINTEXT://{node.host}:{node.port},"
                                f"SASL_SSL://{node.host}:{node.tls_port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map":
            "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.mechanism.inter.broker.protocol": KAFKA_MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": KAFKA_MECHANISM,
        f"listener.name.sasl_plaintext.{scram}.sasl.jaas.config": _jaas(
            _SCRAM, username=KAFKA_BROKER_USER, password=credentials.kafka_broker),
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": KAFKA_MECHANISM,
        f"listener.name.sasl_ssl.{scram}.sasl.jaas.config": _jaas(_SCRAM),
        "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
        "listener.name.sasl_ssl.ssl.keystore.location": str(tls.server_pem),
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            _PLAIN, username=KAFKA_CONTROLLER_USER, password=credentials.kafka_controller,
            **{f"user_{KAFKA_CONTROLLER_USER}": credentials.kafka_controller}),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": ";".join(f"User:{u}" for u in (KAFKA_BROKER_USER,
                                                       KAFKA_CONTROLLER_USER, KAFKA_USER)),
        "allow.everyone.if.no.acl.found": "false",
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


def kafka_ready(bootstrap_servers: str, expected_brokers: int,
                credentials: LocalCredentials) -> bool:
    """True when the cluster answers ``meterly``'s metadata requests with every broker
    registered."""
    from confluent_kafka.admin import AdminClient

    first = bootstrap_servers.split(",")[0]
    host, _, port = first.rpartition(":")
    if not port_open(host, int(port)):
        return False
    admin = AdminClient({**client_config(bootstrap_servers), **credentials.kafka_client(),
                         "log_level": 0})
    try:
        meta = admin.list_topics(timeout=3)
    except Exception:  # noqa: BLE001 - any failure here means "not ready yet"
        return False
    return len(meta.brokers) >= expected_brokers


def set_aside_unsecured(state: Path) -> None:
    """Before a start: set aside a state directory formatted before Kafka was secured (its
    metadata log has no SCRAM users, so its brokers could not authenticate to each other).
    It is moved to ``<state>.plaintext-<n>``, not deleted."""
    if (state / SECURED).exists():
        return
    if state.exists() and any(state.glob("kafka-*/data/meta.properties")):
        n = 1
        while state.with_name(f"{state.name}.plaintext-{n}").exists():
            n += 1
        aside = state.with_name(f"{state.name}.plaintext-{n}")
        state.rename(aside)
        logging.getLogger("meterly").warning(
            "the local Kafka was provisioned without authentication; its data was moved to "
            "%s and a secured one is formatted", aside)


def services(
    lib: Path, state: Path, logs: Path, run: Path, nodes: list[KafkaNode], heap: str,
    credentials: LocalCredentials, tls: LocalTls,
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
        fd = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(server_properties(node, nodes, data, credentials, tls))
        classpath = f"{lib}/*"
        log = logs / f"{node.name}.log"
        if not (data / "meta.properties").exists():
            if not any(state.glob("kafka-*/data/meta.properties")):
                (state / SECURED).write_text("SASL/SCRAM-SHA-512, StandardAuthorizer\n")
            data.mkdir(parents=True, exist_ok=True)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as out:
                formatted = subprocess.run(
                    [java, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
                     "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                     "-c", str(props),
                     *(arg for user, password in (
                         (KAFKA_BROKER_USER, credentials.kafka_broker),
                         (KAFKA_USER, credentials.kafka_meterly))
                       for arg in ("--add-scram",
                                   f"{KAFKA_MECHANISM}=[name={user},password={password}]"))],
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
                ports=[(node.host, node.port), (node.host, node.controller_port),
                       (node.host, node.tls_port)],
                ready=functools.partial(kafka_ready, bootstrap_one, len(nodes), credentials),
            )
        )
    return result


logging.getLogger("confluent_kafka").setLevel(logging.ERROR)
