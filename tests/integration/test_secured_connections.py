"""Meterly over TLS end to end (issue 14, item 1): every process of a stack connects to
Kafka through its SASL_SSL listener (SCRAM-SHA-512, the broker's certificate checked against
the local CA, host names included) and to Cassandra with client encryption, and usage goes
from HTTP and Kafka ingest to an invoice, its PDF and its webhook. Every client library is
on the path: librdkafka (gateway, counter, mirror, validator), Faust over aiokafka (billing,
renderer), aiokafka (the webhook dispatcher) and the Cassandra driver.

That the connections really are the TLS ones is read off the machine, not assumed: each
process's sockets (``ss``) reach the brokers only on their TLS ports, and Cassandra's own
``system_views.clients`` table says every connection from those processes has TLS on.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cassandra.cluster import Session
from confluent_kafka import Producer

from processors.runtime.settings import Settings
from processors.usage.core.periods import period_of
from tests.infra import Infra, LocalInfra
from tests.stack import ALL_WORKERS, Stack, start_stack, wait_for_usage, wait_until
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls(infra: Infra) -> dict[str, str]:
    """The settings that put a process on the TLS listeners of the local stack."""
    if not isinstance(infra, LocalInfra):
        pytest.fail("TLS end to end runs on the locally provisioned stack (its own CA)")
    ca = str(infra.stack.tls().ca_file)
    return {"METERLY_KAFKA_BOOTSTRAP": infra.stack.kafka_tls_bootstrap,
            "METERLY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "METERLY_KAFKA_SSL_CA_FILE": ca,
            "METERLY_CASSANDRA_SSL": "true", "METERLY_CASSANDRA_SSL_CA_FILE": ca}


@pytest.fixture(scope="module")
def stack(settings: Settings, tls: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(
            settings, tmp_path_factory.mktemp("tls"), gateways=1, workers=ALL_WORKERS,
            extra_env={**tls, "METERLY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
                       "METERLY_BILLING_TICK_SECONDS": "0.5",
                       "METERLY_INVOICE_PREFIX": "TLS"}) as running:
        with running.client() as admin:
            made = admin.post("/v1/admin/plans", json={
                "name": "tls", "currency": "EUR",
                "prices": {"jobs": {"model": "per_unit", "unit_price": "0.25"}}})
            assert made.status_code == 201, made.text
        yield running


def _events(source: str, n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [{"specversion": "1.0", "id": f"{source}-{i}", "source": source, "type": "jobs",
             "time": now, "data": {"quantity": 1}} for i in range(n)]


def _sockets(pids: set[int]) -> list[tuple[int, int, int]]:
    """(pid, local port, remote port) of every TCP connection the processes hold."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        local, peer = fields[3].rsplit(":", 1)[1], fields[4].rsplit(":", 1)[1]
        for pid in map(int, re.findall(r"pid=(\d+)", fields[5])):
            if pid in pids:
                found.append((pid, int(local), int(peer)))
    return found


def test_every_client_goes_over_tls_from_request_to_webhook(
        stack: Stack, tls: dict[str, str], cassandra_session: Session,
        live_receiver: Receiver) -> None:
    receiver = live_receiver
    tenant, key = stack.new_tenant("Over TLS", plan="tls")
    with stack.client() as admin:
        hook = admin.post(f"/v1/admin/tenants/{tenant}/webhooks",
                          json={"url": receiver.url})
        assert hook.status_code == 201, hook.text
        made = admin.post("/v1/admin/ingest/credentials",
                          json={"tenant_id": tenant, "name": "over-tls"})
        assert made.status_code == 201, made.text
    with stack.client(token=key) as client:
        assert client.post("/v1/events", json=_events("http", 6)).json()["accepted"] == 6
    # The ingest principal over TLS too: the settings Meterly hands out, plus the CA.
    creds = made.json()
    assert creds["kafka"]["security.protocol"] == "sasl_ssl"
    producer = Producer({**creds["kafka"], "ssl.ca.location": tls["METERLY_KAFKA_SSL_CA_FILE"],
                         "enable.idempotence": True})
    for event in _events("kafka", 4):
        producer.produce(creds["topic"], json.dumps(event).encode(), key=tenant.encode(),
                         headers=[("content-type", b"application/cloudevents+json"),
                                  (creds["header"], creds["key"]["key"].encode())])
    assert producer.flush(30) == 0
    wait_for_usage(stack, key, {"jobs": (10, "10")}, timeout=90)

    period = period_of(datetime.now(UTC))
    stack.close_now(tenant, period)
    invoice = stack.finalized_invoice(tenant, period)
    assert invoice["total"] == {"amount": "2.50", "currency": "EUR"}
    wait_until("invoice.finalized delivered", lambda: any(
        json.loads(r.body).get("type") == "invoice.finalized" for r in receiver.received),
        timeout=90)

    pids = {w.proc.pid for w in stack.workers if w.proc is not None}
    pids |= {g.proc.pid for g in stack.gateways}
    tls_ports = {int(a.rsplit(":", 1)[1]) for a in tls["METERLY_KAFKA_BOOTSTRAP"].split(",")}
    plain_ports = {p - 100 for p in tls_ports}
    sockets = _sockets(pids)
    to_kafka = {(pid, peer) for pid, _local, peer in sockets if peer in tls_ports | plain_ports}
    assert {peer for _pid, peer in to_kafka} <= tls_ports, to_kafka
    assert {pid for pid, _peer in to_kafka} == pids  # every process holds a TLS connection
    ours = {local for _pid, local, peer in sockets if peer == 9042}
    rows = list(cassandra_session.execute(
        "SELECT port, ssl_enabled, username FROM system_views.clients"))
    mine = [r for r in rows if r.port in ours]
    assert mine, (ours, rows)
    assert all(r.ssl_enabled for r in mine), [(r.port, r.ssl_enabled) for r in mine]
    assert {r.username for r in mine} == {"meterly"}
