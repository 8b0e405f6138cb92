"""One way for tests to get real Kafka and Cassandra, whatever the machine offers.

Order of preference: clusters named by METERLY_KAFKA_BOOTSTRAP / METERLY_CASSANDRA_HOSTS;
testcontainers when a Docker engine answers; otherwise Kafka and Cassandra provisioned
locally from Maven Central (``meterly infra``). ``METERLY_TEST_INFRA=external|docker|local``
forces one. A backend that cannot start raises: a missing broker fails the run, never skips it.

S3 (``open_s3``, started only by tests that ask for it): with the external backend, the store
named by METERLY_S3_ENDPOINT_URL / METERLY_S3_ACCESS_KEY / METERLY_S3_SECRET_KEY if set;
otherwise, whatever the backend (local, docker, or external without those variables), S3Proxy
provisioned locally from Maven Central (``meterly infra up --only s3``), which needs only Java.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ops.infra.stack import Component, LocalStack
from ops.provision import use_env
from processors.runtime.settings import Settings


class Infra(Protocol):
    kind: str
    kafka_bootstrap: str
    cassandra_hosts: str

    def restart(self, component: Component) -> None: ...

    def close(self) -> None: ...


@dataclass
class ExternalInfra:
    kafka_bootstrap: str
    cassandra_hosts: str
    kind: str = "external"

    def restart(self, component: Component) -> None:
        raise NotImplementedError("external clusters are not restarted by the test suite")

    def close(self) -> None:
        pass


@dataclass
class LocalInfra:
    stack: LocalStack
    kind: str = "local"
    started: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, settings: Settings) -> LocalInfra:
        """Start (or find) the local stack, and take Meterly's credentials for it into this
        process's settings, which every process a test starts inherits."""
        stack = LocalStack(settings.home, settings.cache_dir, "single", progress=print)
        started = stack.up()
        use_env(stack.client_env())
        return cls(stack, started=started)

    @property
    def kafka_bootstrap(self) -> str:
        return self.stack.kafka_bootstrap

    @property
    def cassandra_hosts(self) -> str:
        return self.stack.cassandra_hosts

    def restart(self, component: Component) -> None:
        self.stack.restart(component)

    def signal(self, name: str, signum: int) -> None:
        """Send ``signum`` to one service (``kafka-1``): SIGSTOP makes a broker unavailable
        with its sockets open, as a frozen machine would; SIGCONT brings it back."""
        pid = next((s.pid for s in self.stack.status() if s.name == name), None)
        assert pid is not None, f"{name} is not running"
        os.kill(pid, signum)

    def close(self) -> None:
        # Leave running what the developer had already started (`meterly infra up`).
        if self.started:
            self.stack.down()


class DockerInfra:
    """Kafka (KRaft) and Cassandra in containers, for machines with a Docker engine."""

    kind = "docker"

    def __init__(self) -> None:
        from testcontainers.community.cassandra import CassandraContainer
        from testcontainers.community.kafka import KafkaContainer

        self._kafka: Any = KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft()
        self._cassandra: Any = CassandraContainer("cassandra:5.0.5")
        self._kafka.start()
        self._cassandra.start()

    @property
    def kafka_bootstrap(self) -> str:
        return str(self._kafka.get_bootstrap_server())

    @property
    def cassandra_hosts(self) -> str:
        host, port = self._cassandra.get_contact_points()[0]
        return f"{host}:{port}"

    def restart(self, component: Component) -> None:
        container = self._kafka if component == "kafka" else self._cassandra
        # Not exercised on the reference machine (it has no Docker engine): a restart may
        # publish new host ports, which the Kafka container's advertised listener would miss.
        container.get_wrapped_container().restart(timeout=60)

    def close(self) -> None:
        self._kafka.stop()
        self._cassandra.stop()


def docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean "no"
        return False


def open_infra(settings: Settings) -> Infra:
    forced = os.environ.get("METERLY_TEST_INFRA")
    if forced == "external" or (forced is None and settings.kafka_bootstrap
                                and settings.cassandra_hosts):
        if not (settings.kafka_bootstrap and settings.cassandra_hosts):
            raise RuntimeError("METERLY_TEST_INFRA=external needs METERLY_KAFKA_BOOTSTRAP "
                               "and METERLY_CASSANDRA_HOSTS")
        return ExternalInfra(settings.kafka_bootstrap, settings.cassandra_hosts)
    if forced == "docker" or (forced is None and docker_engine_answers()):
        return DockerInfra()
    return LocalInfra.start(settings)


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key: str | None
    secret_key: str | None
    region: str = "us-east-1"


@dataclass
class S3:
    endpoint: S3Endpoint
    close: Callable[[], None] = lambda: None


def open_s3(infra: Infra, settings: Settings) -> S3:
    """An S3 endpoint for this backend; raises (never skips) when S3Proxy cannot start."""
    if infra.kind == "external" and settings.s3_endpoint_url:
        return S3(S3Endpoint(settings.s3_endpoint_url, settings.s3_access_key,
                             settings.s3_secret_key, settings.s3_region))
    stack = (infra.stack if isinstance(infra, LocalInfra)
             else LocalStack(settings.home, settings.cache_dir, "single", progress=print))
    started = stack.up(("s3",))
    keys = stack.s3_credentials()

    def close() -> None:
        # Leave running an S3Proxy the developer had already started (`meterly infra up`).
        if started:
            stack.down(("s3",))

    return S3(S3Endpoint(stack.s3_endpoint, keys.access_key, keys.secret_key), close)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("METERLY_TEST_ARTIFACTS", "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path
