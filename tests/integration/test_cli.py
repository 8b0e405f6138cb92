"""The ``meterly`` operator commands against a running gateway, Kafka and Cassandra."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from cassandra.cluster import Session
from confluent_kafka import Producer

from ops.provision import prepare
from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_of
from processors.usage.mirror_table import UsageTable
from schemas import topics
from tests.stack import Stack, env_without_meterly, start_stack, wait_for_usage, wait_until
from tests.usage_load import group_lag

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("cli"), gateways=1) as running:
        yield running


def meterly(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        env={**env_without_meterly(), "METERLY_ADMIN_TOKEN": stack.admin_token,
             "METERLY_PUBLIC_URL": stack.gateways[0].url, **env},
        capture_output=True, text=True, timeout=120)


def test_tenants_keys_and_revocation(stack: Stack) -> None:
    made = meterly(stack, "tenants", "create", "Cli Co", "--email", "ops@cli.example")
    assert made.returncode == 0, made.stderr
    tenant = json.loads(made.stdout)["id"]
    listed = meterly(stack, "tenants", "list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith(tenant + "\t") for line in listed.stdout.splitlines())

    key = meterly(stack, "keys", "create", tenant, "--name", "ci")
    assert key.returncode == 0, key.stderr
    assert "shown once" in key.stderr
    created = json.loads(key.stdout)
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert httpx.get(f"{stack.gateways[0].url}/v1/resources/search", headers=headers,
                     timeout=10).status_code == 200
    revoked = meterly(stack, "keys", "revoke", tenant, created["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert httpx.get(f"{stack.gateways[0].url}/v1/resources/search", headers=headers,
                     timeout=10).status_code == 401
    keys = meterly(stack, "keys", "list", tenant)
    assert f"{created['id']}\t" in keys.stdout
    assert "\trevoked\t" in keys.stdout


def test_errors_are_reported_with_the_problem_detail(stack: Stack) -> None:
    missing = meterly(stack, "keys", "create", "ten_does_not_exist")
    assert missing.returncode == 1
    assert "error 404" in missing.stderr
    assert "ten_does_not_exist" in missing.stderr
    unknown = meterly(stack, "bench", "no-such-bench")
    assert unknown.returncode == 2
    assert "known:" in unknown.stderr
    dead = meterly(stack, "webhooks", "dead-letter")
    assert dead.returncode == 0, dead.stderr


def test_mirror_rebuild_fills_a_new_keyspace(stack: Stack, settings: Settings,
                                             cassandra_session: Session) -> None:
    tenant, key = stack.new_tenant("Rebuilt")
    with stack.client(token=key) as client:
        for _ in range(7):
            assert client.get("/v1/resources/search").status_code == 200
        assert client.post("/v1/events", json=[{
            "specversion": "1.0", "id": "e-1", "source": "cli-test", "type": "tokens",
            "data": {"quantity": "2.5"}}]).status_code == 200
    wait_for_usage(stack, key, {"search": (7, "7"), "tokens": (1, "2.5")})

    fresh = f"meterly_rebuild_{secrets.token_hex(3)}"
    target = stack.settings.model_copy(update={"cassandra_keyspace": fresh})
    assert target.kafka_bootstrap
    assert target.cassandra_hosts
    prepare(target, target.kafka_bootstrap, target.cassandra_hosts)
    # An operator of a secured cluster gives its credentials (the stack's own, here).
    credentials = {k: v for k, v in stack.env.items()
                   if k.startswith(("METERLY_KAFKA_S", "METERLY_CASSANDRA_USER",
                                    "METERLY_CASSANDRA_PASS"))}
    done = meterly(stack, "mirror", "rebuild", **credentials,
                   METERLY_KAFKA_BOOTSTRAP=target.kafka_bootstrap,
                   METERLY_CASSANDRA_HOSTS=target.cassandra_hosts,
                   METERLY_CASSANDRA_KEYSPACE=fresh,
                   METERLY_TOPIC_PREFIX=target.topic_prefix)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr
    original = UsageTable(cassandra_session, settings.cassandra_keyspace)
    rebuilt = UsageTable(cassandra_session, fresh)
    with stack.client() as admin:
        tenants = [t["id"] for t in admin.get("/v1/admin/tenants?limit=500").json()["data"]]
    period = period_of(datetime.now(UTC))
    # This test's tenant, against what it sent (not against the mirror being copied).
    assert {u.meter: (u.count, u.total) for u in rebuilt.read(tenant, period)} == {
        "search": (7, Decimal(7)), "tokens": (1, Decimal("2.5"))}
    # Every other tenant of the stack, against the live mirror.
    compared = 0
    for tenant in tenants:
        before = original.read(tenant, period)
        after = rebuilt.read(tenant, period)
        assert after == before, tenant
        compared += sum(u.count for u in after)
    assert compared >= 8
    assert any(u.total == Decimal("2.5") for t in tenants for u in rebuilt.read(t, period))
    cassandra_session.execute(f"DROP KEYSPACE {fresh}", timeout=120)


def test_demo_creates_tenants_and_sends_traffic(stack: Stack) -> None:
    done = meterly(stack, "demo", "--seconds", "3")
    assert done.returncode == 0, done.stderr
    said = re.search(r"sent ([0-9,]+) events", done.stderr)
    assert said, done.stderr
    sent = int(said.group(1).replace(",", ""))
    assert sent > 0
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3
    keys = []
    for line in lines:
        name, tenant, key_text, upcoming = line.split("\t")
        key = key_text.removeprefix("key ")
        usage = httpx.get(f"{stack.gateways[0].url}/v1/usage", timeout=10,
                          headers={"Authorization": f"Bearer {key}"}).json()
        assert usage["tenant_id"] == tenant
        assert upcoming.startswith("upcoming invoice ")
        assert upcoming.endswith(" EUR"), (name, upcoming)
        keys.append(key)

    def counted() -> list[int]:
        """Events counted per demo tenant (every meter)."""
        return [sum(m["count"] for m in httpx.get(
            f"{stack.gateways[0].url}/v1/usage", timeout=10,
            headers={"Authorization": f"Bearer {key}"}).json()["meters"]) for key in keys]

    # Every event the demo sent (all with fresh ids) is counted, for each of its tenants.
    per_tenant = wait_until(f"the demo's {sent} events counted", lambda: (
        c if sum(c := counted()) == sent else None), timeout=60)
    assert all(n > 0 for n in per_tenant), per_tenant


def test_ingest_dead_letters_are_listed_and_replayed_once_fixed(stack: Stack) -> None:
    """Protocol step 4 of processors/usage/ingest_validator.py and its way back: records
    for a suspended tenant are dead-lettered; once the tenant is reactivated,
    ``meterly ingest dead-letter --replay`` counts them, and a second replay counts nothing
    twice."""
    tenant, key = stack.new_tenant("Replay Co")
    with stack.client() as admin:
        assert admin.post(f"/v1/admin/tenants/{tenant}/suspend").status_code == 200
    bootstrap = stack.settings.kafka_bootstrap
    assert bootstrap
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True,
                         "acks": "all"})
    for i in range(25):
        event = {"specversion": "1.0", "id": f"r-{i}", "source": "replay", "type": "jobs",
                 "time": now, "data": {"quantity": 2}}
        producer.produce(topics.INGEST.full_name(stack.settings.topic_prefix),
                         json.dumps(event).encode(), key=tenant.encode(),
                         headers=[("content-type", b"application/cloudevents+json"),
                                  ("meterly-key", key.encode())])
    assert producer.flush(30) == 0

    def listed() -> list[str]:
        out = meterly(stack, "ingest", "dead-letter", "--tenant", tenant)
        assert out.returncode == 0, out.stderr
        return [line for line in out.stdout.splitlines() if line]
    lines = wait_until("25 dead letters", lambda: len(listed()) >= 25 and listed(), timeout=60)
    assert len(lines) == 25
    assert all("is suspended" in line for line in lines)
    assert {line.split("\t")[2] for line in lines} == {f"r-{i}" for i in range(25)}

    with stack.client() as admin:
        assert admin.post(f"/v1/admin/tenants/{tenant}/reactivate").status_code == 200
    for _ in range(2):
        done = meterly(stack, "ingest", "dead-letter", "--replay", "--tenant", tenant,
                       "--reason", "suspended")
        assert done.returncode == 0, done.stderr
        assert "replayed 25 records" in done.stderr
    wait_for_usage(stack, key, {"jobs": (25, "50")}, timeout=60)
    # The second replay is processed too, and counts nothing: wait until every stage has
    # consumed everything up to here (each stage's output is committed with its offsets, so
    # lag 0 upstream means the downstream topic holds it all), then read the usage once.
    prefix = stack.settings.topic_prefix
    for group, topic in ((topics.INGEST_VALIDATOR_GROUP, topics.INGEST),
                         (topics.COUNTER_GROUP, topics.USAGE),
                         (topics.MIRROR_GROUP, topics.COUNTER_CHANGELOG)):
        wait_until(f"{group} to consume {topic.name}", lambda group=group, topic=topic:
                   group_lag(bootstrap, f"{prefix}{group}", topic.full_name(prefix)) == 0,
                   timeout=60)
    with stack.client(token=key) as client:
        meters = client.get("/v1/usage").json()["meters"]
    assert {m["meter"]: (m["count"], m["sum"]) for m in meters} == {"jobs": (25, "50")}
