"""The locally provisioned infrastructure as one unit: up, status, restart, down.

Single mode runs one Kafka node and one Cassandra node (what ``meterly run`` and the test
suite use). Cluster mode runs three Kafka brokers and three Cassandra nodes on
127.0.0.1/.2/.3 for fault tests. S3Proxy, an S3-compatible object store, is optional: it
starts only when asked for (``meterly infra up --only s3``, the tests' ``s3_endpoint``),
since invoice PDFs go to a local directory unless S3 is configured.

Kafka and Cassandra are secured (``ops.infra.kafka``, ``ops.infra.cassandra``): the
credentials are in ``<home>/infra/credentials.json`` and the local CA in
``<home>/infra/tls/``, the same for both modes; ``client_env`` is the settings a Meterly
process connects with (``meterly infra env`` prints them).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ops.infra import artifacts, cassandra, credentials, kafka, s3proxy, tls
from ops.infra.process import (
    Service,
    kill,
    resident_bytes,
    running_pid,
    start,
    stop_all,
    wait_ready,
)

Mode = Literal["single", "cluster"]
Component = Literal["kafka", "cassandra", "s3"]
#: What starts unless told otherwise (``meterly run``, ``meterly infra up``).
COMPONENTS: tuple[Component, ...] = ("kafka", "cassandra")
#: Everything that can be provisioned; ``s3`` (S3Proxy) only when asked for.
ALL_COMPONENTS: tuple[Component, ...] = (*COMPONENTS, "s3")
_ARTIFACTS = {"kafka": artifacts.KAFKA, "cassandra": artifacts.CASSANDRA, "s3": artifacts.S3PROXY}


@dataclass(frozen=True)
class Ports:
    kafka_base: int = 9092
    cassandra_native: int = 9042
    cassandra_storage: int = 7000
    cassandra_jmx_base: int = 7199
    #: One S3Proxy in either mode.
    s3proxy: int = 8081


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    healthy: bool
    resident_bytes: int
    endpoint: str


class LocalStack:
    """Kafka and Cassandra as background processes under ``home``; jars under ``cache``."""

    def __init__(
        self,
        home: Path,
        cache: Path | None = None,
        mode: Mode = "single",
        ports: Ports = Ports(),
        progress: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.home = home.resolve()
        self.cache = (cache or self.home / "cache").resolve()
        self.mode = mode
        self.ports = ports
        self.progress = progress
        count = 1 if mode == "single" else 3
        self.kafka_nodes = kafka.kafka_nodes(count, ports.kafka_base)
        self.cassandra_nodes = cassandra.cassandra_nodes(
            count, ports.cassandra_native, ports.cassandra_storage, ports.cassandra_jmx_base
        )
        self._state = self.home / "infra" / mode
        self.logs = self.home / "logs"
        self._run = self.home / "run"

    @property
    def kafka_bootstrap(self) -> str:
        return kafka.bootstrap(self.kafka_nodes)

    @property
    def cassandra_hosts(self) -> str:
        return cassandra.contact_points(self.cassandra_nodes)

    @property
    def kafka_tls_bootstrap(self) -> str:
        """The same brokers' SASL_SSL listeners (certificates of ``tls().ca_file``)."""
        return kafka.tls_bootstrap(self.kafka_nodes)

    def credentials(self) -> credentials.LocalCredentials:
        """The generated passwords (made on first use, kept 0600)."""
        return credentials.load_or_create(self.credentials_file)

    @property
    def credentials_file(self) -> Path:
        # One set for both modes, so a process's settings fit the single node and the
        # cluster alike.
        return self.home / "infra" / "credentials.json"

    def tls(self) -> tls.LocalTls:
        """The local CA and the nodes' certificate (made on first use)."""
        # Every address a node of either mode listens on.
        addresses = [f"127.0.0.{i}" for i in (1, 2, 3)]
        return tls.ensure(self.home / "infra" / "tls", addresses)

    def client_env(self, components: tuple[Component, ...] = COMPONENTS) -> dict[str, str]:
        """The ``METERLY_*`` settings of a process using this stack's ``components`` as
        Meterly: where they are, and Meterly's own credentials."""
        env = {k: v for k, v in self.credentials().client_env().items()
               if k.startswith(tuple(f"METERLY_{c.upper()}_" for c in components))}
        if "kafka" in components:
            env["METERLY_KAFKA_BOOTSTRAP"] = self.kafka_bootstrap
        if "cassandra" in components:
            env["METERLY_CASSANDRA_HOSTS"] = self.cassandra_hosts
        return env

    @property
    def s3_endpoint(self) -> str:
        return s3proxy.endpoint("127.0.0.1", self.ports.s3proxy)

    def s3_credentials(self) -> s3proxy.S3Credentials:
        """S3Proxy's access and secret key, generated on first use (kept in its state dir)."""
        return s3proxy.credentials(self._state / "s3proxy")

    @property
    def s3_credentials_file(self) -> Path:
        return s3proxy.credentials_file(self._state / "s3proxy")

    def _lib(self, which: artifacts.ArtifactSet) -> Path:
        if not artifacts.is_cached(self.cache, which):
            self.progress(f"downloading {which.name} from Maven Central (first start only)")
        return artifacts.ensure(self.cache, which, self.logs / "maven.log")

    def services(self, component: Component) -> list[Service]:
        heap = "1g" if self.mode == "single" else "512m"
        if component == "s3":
            return [s3proxy.service(
                self._lib(artifacts.S3PROXY), self._state / "s3proxy", self.logs, self._run,
                "127.0.0.1", self.ports.s3proxy,
            )]
        if component == "kafka":
            return kafka.services(
                self._lib(artifacts.KAFKA), self._state / "kafka", self.logs, self._run,
                self.kafka_nodes, heap="512m" if self.mode == "cluster" else "1g",
                credentials=self.credentials(), tls=self.tls(),
            )
        return cassandra.services(
            self._lib(artifacts.CASSANDRA), self._state / "cassandra", self.logs, self._run,
            self.cassandra_nodes, heap=heap, credentials=self.credentials(), tls=self.tls(),
        )

    def up(self, components: tuple[Component, ...] = COMPONENTS) -> list[str]:
        """Start what is not running; return the names of services this call started."""
        started: list[str] = []
        for component in components:
            begun = time.monotonic()
            if component == "kafka" and not any(
                    running_pid(s) for s in self._known(component)):
                kafka.set_aside_unsecured(self._state / "kafka")
            services = self.services(component)
            if component == "kafka":
                # A KRaft quorum becomes ready only once a majority runs: launch all, then wait.
                for service in services:
                    if start(service, timeout=90, wait=False):
                        started.append(service.name)
                wait_ready(services, timeout=120)
            elif component == "s3":
                started += [s.name for s in services if start(s, timeout=60)]
            else:
                # Cassandra nodes join one at a time; the seed (node 1) goes first.
                for service in services:
                    if start(service, timeout=180):
                        started.append(service.name)
                if len(services) > 1:
                    self._wait_for_peers(services)
                cassandra.secure(self.cassandra_nodes[0], self.credentials())
            self.progress(f"{component} ready in {time.monotonic() - begun:.1f}s")
        return started

    def _wait_for_peers(self, services: list[Service]) -> None:
        peers = len(self.cassandra_nodes) - 1
        nodes_ready = [
            Service(
                s.name, s.argv, s.workdir, s.log, s.pidfile, s.marker, s.ports,
                ready=functools.partial(cassandra.cassandra_ready, n, self.credentials(),
                                        peers),
            )
            for s, n in zip(services, self.cassandra_nodes, strict=True)
        ]
        wait_ready(nodes_ready, timeout=120)

    def down(self, components: tuple[Component, ...] = COMPONENTS) -> list[str]:
        stopped = []
        # Reverse start order: clients of Kafka may still flush while Cassandra stops.
        for component in reversed(components):
            stopped += stop_all(self._known(component))
        return stopped

    def restart(self, component: Component) -> None:
        stop_all(self._known(component))
        self.up((component,))

    def kill(self, name: str) -> bool:
        """SIGKILL one service by name (``kafka-2``, ``cassandra-3``) to simulate a crash."""
        for component in ALL_COMPONENTS:
            for service in self._known(component):
                if service.name == name:
                    return kill(service)
        raise KeyError(name)

    def start_one(self, name: str) -> None:
        for component in COMPONENTS:
            services = self.services(component)
            for service in services:
                if service.name == name:
                    start(service, timeout=180, wait=component == "cassandra")
                    if component == "kafka":
                        wait_ready([service], timeout=120)
                    return
        raise KeyError(name)

    def _known(self, component: Component) -> list[Service]:
        """Services as configured, without downloading anything (for stop and status)."""
        if not artifacts.is_cached(self.cache, _ARTIFACTS[component]):
            return []
        return self.services(component)

    def status(self) -> list[ServiceStatus]:
        result = []
        endpoints = {n.name: f"{n.host}:{n.port}" for n in self.kafka_nodes}
        endpoints.update({n.name: f"{n.address}:{n.native_port}" for n in self.cassandra_nodes})
        endpoints[s3proxy.NAME] = f"127.0.0.1:{self.ports.s3proxy}"
        for component in ALL_COMPONENTS:
            for service in self._known(component):
                pid = running_pid(service)
                if pid is None and component not in COMPONENTS:
                    continue  # an optional service is listed only while it runs
                result.append(
                    ServiceStatus(
                        name=service.name,
                        pid=pid,
                        healthy=pid is not None and service.ready(),
                        resident_bytes=resident_bytes(pid) if pid else 0,
                        endpoint=endpoints[service.name],
                    )
                )
        return result

    def running(self) -> bool:
        return any(s.pid is not None for s in self.status())
