"""What the benchmark scripts share: a fresh deployment on the running Kafka and Cassandra,
a free port, a started gateway, a tenant with a key, process figures."""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ops.provision import prepare, use_local_infra
from ops.topics import ensure_topics
from processors.runtime.settings import Settings, get_settings
from schemas.topics import ALL_TOPICS


@dataclass(frozen=True)
class Deployment:
    """A topic prefix and keyspace of the benchmark's own on the running clusters."""

    settings: Settings
    bootstrap: str
    cassandra: str

    @property
    def prefix(self) -> str:
        return self.settings.topic_prefix

    @property
    def keyspace(self) -> str:
        return self.settings.cassandra_keyspace

    def env(self, home: str | Path, **extra: str) -> dict[str, str]:
        """The environment of a Meterly process of this deployment (``METERLY_*`` from
        ``extra``: ``port="3000"`` sets ``METERLY_PORT``)."""
        return {**os.environ, "METERLY_KAFKA_BOOTSTRAP": self.bootstrap,
                "METERLY_CASSANDRA_HOSTS": self.cassandra,
                "METERLY_TOPIC_PREFIX": self.prefix, "METERLY_CASSANDRA_KEYSPACE": self.keyspace,
                "METERLY_HOME": str(home),
                **{f"METERLY_{name.upper()}": value for name, value in extra.items()}}


def fresh_deployment() -> Deployment:
    """New topics and a new keyspace (migrated) on the clusters ``meterly infra up`` runs,
    or those METERLY_KAFKA_BOOTSTRAP / METERLY_CASSANDRA_HOSTS name."""
    # The provisioned clusters take Meterly's credentials (ops.provision.use_local_infra).
    settings = use_local_infra(get_settings())
    assert settings.kafka_bootstrap
    assert settings.cassandra_hosts
    bootstrap, cassandra = settings.kafka_bootstrap, settings.cassandra_hosts
    scoped = settings.model_copy(update={"topic_prefix": f"bench-{secrets.token_hex(3)}.",
                                         "cassandra_keyspace": f"bench_{secrets.token_hex(3)}"})
    ensure_topics(bootstrap, scoped.topic_prefix, 1, ALL_TOPICS)
    prepare(scoped, bootstrap, cassandra)
    return Deployment(scoped, bootstrap, cassandra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{base} did not answer /healthz within {timeout:.0f}s")


def tenant_key(base: str, operator_token: str, name: str) -> str:
    """Create a tenant and an API key through the operator API; return the raw key."""
    admin = {"Authorization": f"Bearer {operator_token}"}
    tenant = httpx.post(f"{base}/v1/admin/tenants", headers=admin, json={
        "name": name, "billing_email": f"{name}@example.com", "currency": "USD"}).json()
    key: str = httpx.post(f"{base}/v1/admin/tenants/{tenant['id']}/keys", headers=admin,
                          json={"name": name}).json()["key"]
    return key


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def jvm_pids() -> dict[str, int]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        for name, marker in (("kafka", b"kafka.Kafka"), ("cassandra", b"CassandraDaemon")):
            if marker in cmdline and b"java" in cmdline:
                found[name] = int(entry.name)
    return found
