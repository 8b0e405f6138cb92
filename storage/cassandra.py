"""Cassandra sessions from a ``host[:port],...`` contact-point list, and statements prepared
with their consistency levels."""

from __future__ import annotations

from dataclasses import dataclass

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement

DEFAULT_PORT = 9042


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
    contact_points: str, keyspace: str | None = None, request_timeout: float = 10.0
) -> tuple[Cluster, Session]:
    points = ContactPoints.parse(contact_points)
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
