"""Liveness and readiness: /healthz says the process serves, /readyz checks Kafka and Cassandra."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from processors.kafka.config import client_config
from storage.cassandra import PLAIN, CassandraSecurity, connect


@dataclass
class Dependencies:
    """Readiness probes for the two stores the gateway needs."""

    kafka_bootstrap: str
    cassandra_hosts: str
    cassandra_security: CassandraSecurity = PLAIN

    def kafka_ok(self) -> str | None:
        try:
            meta = AdminClient(client_config(self.kafka_bootstrap)).list_topics(timeout=2)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return f"kafka: {exc}"
        return None if meta.brokers else "kafka: no broker answered"

    def cassandra_ok(self) -> str | None:
        try:
            cluster, session = connect(self.cassandra_hosts, security=self.cassandra_security)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return f"cassandra: {exc}"
        try:
            session.execute("SELECT release_version FROM system.local", timeout=2)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return f"cassandra: {exc}"
        finally:
            cluster.shutdown()
        return None

    async def problems(self) -> list[str]:
        results = await asyncio.gather(
            asyncio.to_thread(self.kafka_ok), asyncio.to_thread(self.cassandra_ok)
        )
        return [r for r in results if r]
