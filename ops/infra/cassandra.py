"""Apache Cassandra 5.0 launched straight from its jars: one node, or three for fault tests.

``bin/cassandra`` is not used: it refuses to run as root and needs a full distribution.
The JVM flags below are the ones upstream ships in ``conf/jvm-server.options`` and
``conf/jvm17-server.options`` for Java 17 (module exports and opens that Cassandra needs),
minus heap pre-touch, which only slows a laptop start.

Secured like a production node: ``PasswordAuthenticator`` with ``CassandraAuthorizer``,
and client encryption offered on the native port (optional, so a client chooses TLS or
not; the certificate is the local CA's of ``ops.infra.tls``). On the first start the
default superuser ``cassandra``/``cassandra`` is used once (``secure``) to create Meterly's
own role, ``meterly``, a superuser with a generated password; ``meterly`` then turns the
default role's login off and gives it a random password. ``system_auth`` is replicated to
every node of a cluster, so a node down never locks Meterly out.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.infra.artifacts import ProvisioningError
from ops.infra.credentials import CASSANDRA_ROLE, LocalCredentials
from ops.infra.java import java_executable
from ops.infra.process import Service, port_open
from ops.infra.tls import LocalTls

#: The superuser every new Cassandra has until ``secure`` turns it off.
DEFAULT_ROLE = ("cassandra", "cassandra")


@dataclass(frozen=True)
class CassandraNode:
    index: int
    address: str
    native_port: int
    storage_port: int
    jmx_port: int

    @property
    def name(self) -> str:
        return f"cassandra-{self.index}"


def cassandra_nodes(
    count: int, native_port: int = 9042, storage_port: int = 7000, jmx_base: int = 7199
) -> list[CassandraNode]:
    # Every 127.x address binds on Linux without setup, so each node gets its own address
    # and all share the same ports, as they would on separate machines.
    return [
        CassandraNode(i, f"127.0.0.{i}", native_port, storage_port, jmx_base + 100 * (i - 1))
        for i in range(1, count + 1)
    ]


def contact_points(nodes: list[CassandraNode]) -> str:
    return ",".join(f"{n.address}:{n.native_port}" for n in nodes)


def cassandra_yaml(node: CassandraNode, seed: CassandraNode, state: Path,
                   tls: LocalTls) -> str:
    return f"""cluster_name: meterly-local
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{seed.address}:{seed.storage_port}"
listen_address: {node.address}
rpc_address: {node.address}
storage_port: {node.storage_port}
native_transport_port: {node.native_port}
start_native_transport: true
commitlog_sync: periodic
commitlog_sync_period: 10000ms
data_file_directories:
  - {state / "data"}
commitlog_directory: {state / "commitlog"}
hints_directory: {state / "hints"}
saved_caches_directory: {state / "saved_caches"}
concurrent_compactors: 1
auto_snapshot: false
authenticator: PasswordAuthenticator
authorizer: CassandraAuthorizer
role_manager: CassandraRoleManager
client_encryption_options:
  enabled: true
  optional: true
  ssl_context_factory:
    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory
  keystore: {tls.server_pem}
"""


_LOGBACK = """<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""

_JVM_OPTIONS = [
    "-ea", "-da:net.openhft...", "-XX:+UseThreadPriorities", "-Xss256k",
    "-XX:+UseTLAB", "-XX:+ResizeTLAB", "-XX:+PerfDisableSharedMem",
    "-Djava.net.preferIPv4Stack=true",
    "-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m", "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300", "-XX:InitiatingHeapOccupancyPercent=70",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]


def _node_cluster(node: CassandraNode, role: tuple[str, str]) -> Any:
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([node.address]),
                               request_timeout=30)
    return Cluster(
        [node.address],
        port=node.native_port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=3,
        auth_provider=PlainTextAuthProvider(username=role[0], password=role[1]),
    )


def _roles(credentials: LocalCredentials) -> list[tuple[str, str]]:
    """Who may log in: ``meterly`` once ``secure`` ran, the default role before."""
    return [(CASSANDRA_ROLE, credentials.cassandra_meterly), DEFAULT_ROLE]


def cassandra_ready(node: CassandraNode, credentials: LocalCredentials,
                    expected_peers: int = 0) -> bool:
    """True when the node answers CQL and, in a cluster, sees its peers.

    Without peers to count, a refused login is an answer too: the first node of a cluster
    cannot read its roles (``system_auth`` is replicated to three nodes) until the others
    joined, and it must count as started for them to be started."""
    if not port_open(node.address, node.native_port):
        return False
    for role in _roles(credentials):
        answer = _answers(node, role, expected_peers)
        if answer is not None:
            return answer
    return False


def _answers(node: CassandraNode, role: tuple[str, str], expected_peers: int) -> bool | None:
    """Whether the node is ready, seen as ``role``; None when ``role`` may not log in and
    peers must be counted."""
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    cluster = _node_cluster(node, role)
    try:
        session = cluster.connect()
        session.execute("SELECT release_version FROM system.local", timeout=3)
        if expected_peers:
            peers = list(session.execute("SELECT peer FROM system.peers_v2", timeout=3))
            return len(peers) >= expected_peers
        return True
    except NoHostAvailable as exc:
        if any(isinstance(e, AuthenticationFailed) for e in exc.errors.values()):
            return None if expected_peers else True
        return False
    except Exception:  # noqa: BLE001 - any failure here means "not ready yet"
        return False
    finally:
        cluster.shutdown()


def secure(node: CassandraNode, credentials: LocalCredentials, timeout: float = 90) -> None:
    """Make Meterly's role and disable the default one, once (idempotent). The default
    role appears a moment after a node's first start (in a cluster, once a quorum of
    ``system_auth`` replicas runs), so logins are retried until ``timeout``."""
    own = (CASSANDRA_ROLE, credentials.cassandra_meterly)
    deadline = time.monotonic() + timeout
    while True:
        session = _login(node, own)
        if session is not None:
            break
        default = _login(node, DEFAULT_ROLE)
        if default is not None:
            cluster, s = default
            try:
                s.execute(f"CREATE ROLE IF NOT EXISTS {CASSANDRA_ROLE} WITH PASSWORD = "
                          f"'{credentials.cassandra_meterly}' AND LOGIN = true "
                          "AND SUPERUSER = true")
            finally:
                cluster.shutdown()
            continue
        if time.monotonic() > deadline:
            raise ProvisioningError(
                f"{node.name} accepts neither Meterly's role (credentials.json) nor the "
                "default one: its system_auth was changed by hand, or credentials.json was "
                "replaced. Restore the file, or remove the node's state to start afresh.")
        time.sleep(0.5)
    cluster, s = session
    try:
        s.execute(f"ALTER ROLE {DEFAULT_ROLE[0]} WITH PASSWORD = "
                  f"'{credentials.cassandra_default}' AND LOGIN = false AND SUPERUSER = false")
    finally:
        cluster.shutdown()


def _login(node: CassandraNode, role: tuple[str, str]) -> Any:
    """(cluster, session) logged in as ``role``, or None when the node refuses it."""
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    cluster = _node_cluster(node, role)
    try:
        return cluster, cluster.connect()
    except NoHostAvailable as exc:
        cluster.shutdown()
        if any(isinstance(e, AuthenticationFailed) for e in exc.errors.values()):
            return None
        raise


def services(
    lib: Path, state: Path, logs: Path, run: Path, nodes: list[CassandraNode], heap: str,
    credentials: LocalCredentials, tls: LocalTls,
) -> list[Service]:
    java = java_executable()
    jamm = sorted(lib.glob("jamm-*.jar"))
    result = []
    for node in nodes:
        node_state = state / node.name
        conf = node_state / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        yaml = conf / "cassandra.yaml"
        yaml.write_text(cassandra_yaml(node, nodes[0], node_state, tls))
        logback = conf / "logback.xml"
        logback.write_text(_LOGBACK)
        marker = f"-Dmeterly.service={node.name}@{state}"
        single = len(nodes) == 1
        argv = [
            java, marker, f"-Xms{heap}", f"-Xmx{heap}", *_JVM_OPTIONS,
            *([f"-javaagent:{jamm[0]}"] if jamm else []),
            f"-Dcassandra.config=file://{yaml}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.storagedir={node_state}",
            f"-Dcassandra.logdir={logs}",
            f"-Dlogback.configurationFile={logback}",
            f"-Dcassandra.jmx.local.port={node.jmx_port}",
            # A lone node has no gossip to wait for; a cluster waits briefly, not 30 s.
            "-Dcassandra.ring_delay_ms=1000",
            # The default role at once (not after 10 s), and system_auth on every node.
            "-Dcassandra.superuser_setup_delay_ms=0",
            f"-Dcassandra.system_auth.default_rf={len(nodes)}",
            *(["-Dcassandra.skip_wait_for_gossip_to_settle=0"] if single else []),
            "-cp", f"{lib}/*", "org.apache.cassandra.service.CassandraDaemon",
        ]
        result.append(
            Service(
                name=node.name,
                argv=argv,
                workdir=node_state,
                log=logs / f"{node.name}.log",
                pidfile=run / f"{node.name}.pid",
                marker=marker,
                ports=[
                    (node.address, node.native_port),
                    (node.address, node.storage_port),
                    ("127.0.0.1", node.jmx_port),
                ],
                ready=functools.partial(cassandra_ready, node, credentials),
            )
        )
    return result


logging.getLogger("cassandra").setLevel(logging.ERROR)
