"""The ``meterly`` operator commands against a running gateway, Kafka and Cassandra."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from cassandra.cluster import Session

from ops.provision import prepare
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_of
from processors.usage.mirror_table import UsageTable
from tests.stack import Stack, env_without_meterly, start_stack, wait_for_usage

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
    _tenant, key = stack.new_tenant("Rebuilt")
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
    done = meterly(stack, "mirror", "rebuild",
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
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        name, tenant, key_text, upcoming = line.split("\t")
        key = key_text.removeprefix("key ")
        usage = httpx.get(f"{stack.gateways[0].url}/v1/usage", timeout=10,
                          headers={"Authorization": f"Bearer {key}"}).json()
        assert usage["tenant_id"] == tenant
        assert upcoming.startswith("upcoming invoice ")
        assert upcoming.endswith(" EUR"), (name, upcoming)
