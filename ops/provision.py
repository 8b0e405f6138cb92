"""Where Kafka and Cassandra are (configured, or provisioned here), and preparing them.

``resolve_infra`` uses configured clusters and provisions locally whatever is not
configured; ``prepare`` creates the topics and applies the migrations (both idempotent).
What is provisioned here is secured (``ops.infra.stack``): ``Infra.env`` holds the settings
(Meterly's credentials) that the processes using it are started with, and
``use_local_infra`` puts them into this process's own settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ops.infra.stack import COMPONENTS, Component, LocalStack, Mode
from ops.output import say
from processors.runtime.settings import Settings, get_settings


def local_stack(settings: Settings, mode: Mode = "single") -> LocalStack:
    return LocalStack(settings.home, settings.cache_dir, mode, progress=say)


@dataclass
class Infra:
    """Where Kafka and Cassandra are, and what this process started (to stop it later)."""

    kafka_bootstrap: str
    cassandra_hosts: str
    stack: LocalStack
    started: list[str] = field(default_factory=list)
    #: The settings of the provisioned part (addresses and Meterly's credentials).
    env: dict[str, str] = field(default_factory=dict)


def _provisioned(settings: Settings) -> tuple[Component, ...]:
    return tuple(c for c in COMPONENTS
                 if (c == "kafka" and settings.provisions_kafka)
                 or (c == "cassandra" and settings.provisions_cassandra))


def resolve_infra(settings: Settings) -> Infra:
    """Use configured clusters; provision locally whatever is not configured."""
    stack = local_stack(settings)
    wanted = _provisioned(settings)
    started = stack.up(wanted) if wanted else []
    return Infra(
        settings.kafka_bootstrap or stack.kafka_bootstrap,
        settings.cassandra_hosts or stack.cassandra_hosts,
        stack,
        started,
        stack.client_env(wanted) if wanted else {},
    )


def use_env(env: dict[str, str]) -> Settings:
    """Put ``env`` into this process's environment (and so its children's) and return the
    settings read afresh."""
    os.environ.update(env)
    get_settings.cache_clear()
    return get_settings()


def use_local_infra(settings: Settings) -> Settings:
    """This process's settings, with the address and credentials of the locally
    provisioned Kafka and Cassandra for whichever of them is not configured (for the CLI's
    own clients and the benchmarks, which run beside ``meterly run`` or ``meterly infra
    up``)."""
    wanted = _provisioned(settings)
    if not wanted:
        return settings
    return use_env(local_stack(settings).client_env(wanted))


def prepare(settings: Settings, kafka_bootstrap: str, cassandra_hosts: str) -> None:
    """Create topics and apply migrations; both are idempotent."""
    from ops.topics import ensure_topics
    from storage.cassandra import connect
    from storage.migrate import migrate

    created = ensure_topics(
        kafka_bootstrap, settings.topic_prefix, settings.kafka_replication_factor
    )
    if created:
        say(f"created topics: {', '.join(created)}")
    cluster, session = connect(cassandra_hosts, security=settings.cassandra_security)
    try:
        applied = migrate(session, settings.cassandra_keyspace, settings.cassandra_replication)
    finally:
        cluster.shutdown()
    if applied:
        say(f"applied migrations {applied} to keyspace {settings.cassandra_keyspace}")
