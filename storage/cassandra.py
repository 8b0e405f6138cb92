"""Cassandra sessions from a ``host[:port],...`` contact-point list (with credentials and
TLS when the cluster asks for them), and statements prepared with their consistency
levels."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement

DEFAULT_PORT = 9042


@dataclass(frozen=True)
class CassandraSecurity:
    """Credentials (for ``PasswordAuthenticator``) and TLS towards the cluster."""

    username: str | None = None
    password: str | None = None
    tls: bool = False
    #: The CA bundle the nodes' certificates chain to (unset: the system's); hostnames are
    #: checked against the contact points.
    ca_file: Path | None = None
    #: A client certificate and key (PEM), for nodes that require one.
    cert_file: Path | None = None
    key_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file and self.key_file:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def auth_provider(self) -> PlainTextAuthProvider | None:
        if self.username is None:
            return None
        return PlainTextAuthProvider(username=self.username, password=self.password)


PLAIN = CassandraSecurity()


@dataclass(frozen=True)
class ContactPoints:
    hosts: tuple[str, ...]
    port: int

    @classmethod
    def parse(cls, text: str) -> ContactPoints:
        hosts: list[str] = []
        ports: set[int] = set()
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            host, sep, port = item.rpartition(":")
            if not sep:
                host, port = item, str(DEFAULT_PORT)
            if not port.isdigit():
                raise ValueError(f"bad Cassandra contact point {item!r}: port is not a number")
            hosts.append(host)
            ports.add(int(port))
        if not hosts:
            raise ValueError("no Cassandra contact point given")
        if len(ports) > 1:
            # The driver takes one native port for every contact point.
            raise ValueError(f"Cassandra contact points use different ports: {sorted(ports)}")
        return cls(tuple(hosts), ports.pop())


def connect(
    contact_points: str, keyspace: str | None = None, request_timeout: float = 10.0,
    security: CassandraSecurity = PLAIN,
) -> tuple[Cluster, Session]:
    """A session on the cluster. ``security`` comes from the process's settings
    (``Settings.cassandra_security``): every caller in Meterly passes it, which
    ``tests/unit/test_kafka_config.py`` checks."""
    points = ContactPoints.parse(contact_points)
    context = security.ssl_context()
    cluster = Cluster(
        list(points.hosts),
        port=points.port,
        protocol_version=5,
        execution_profiles={
            EXEC_PROFILE_DEFAULT: ExecutionProfile(
                load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                request_timeout=request_timeout,
            )
        },
        connect_timeout=10,
        auth_provider=security.auth_provider(),
        ssl_context=context,
    )
    session = cluster.connect(keyspace)
    return cluster, session


def prepare(session: Session, cql: str, consistency: int | None = None,
            serial: bool = False) -> PreparedStatement:
    """``cql`` prepared; ``consistency`` is a ``ConsistencyLevel`` (None: the session's
    default), and ``serial`` gives a lightweight transaction LOCAL_SERIAL."""
    statement = session.prepare(cql)
    if consistency is not None:
        statement.consistency_level = consistency
    if serial:
        statement.serial_consistency_level = ConsistencyLevel.LOCAL_SERIAL
    return statement
