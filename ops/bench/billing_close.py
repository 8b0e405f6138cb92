"""Period close at scale: N tenants priced, numbered, rendered to PDF and stored.

    python -m ops.bench.billing_close [--tenants 10000] [--renderers 1]

Needs Kafka and Cassandra running (``meterly infra up``). On a fresh keyspace and topic
prefix it writes N tenants with a three-meter plan (graduated, volume, per unit) to the
admin topic and one period of usage per tenant straight into the counter mirror (counting
is measured by ``ops.bench.counting``), starts the billing worker and ``--renderers``
invoice renderers as real processes, then moves their clock past the period's end plus
grace. Measured: from that clock change until every invoice is finalized, and until every
PDF is stored with its SHA-256. Baselines in the same run: the same number of invoice rows
written to Cassandra bare, and the same number of PDFs rendered in one process.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from cassandra.concurrent import execute_concurrent_with_args
from confluent_kafka import Producer

from ops.bench.common import cpu_seconds, free_port, fresh_deployment, jvm_pids
from processors.billing import invoice_codec
from processors.billing.core.invoice import BillingParty, Party, PlanAssignment, compose_invoice
from processors.billing.core.invoice_pdf import render_invoice_pdf
from processors.billing.core.plans import to_plan
from processors.kafka.config import client_config
from processors.usage.core.periods import period_bounds
from processors.usage.mirror_table import UsageTable
from schemas import admin_v1
from schemas.plans_v1 import PlanSpec
from schemas.topics import ADMIN
from storage.cassandra import connect

PERIOD = "2026-10"
PLAN = {
    "name": "bench", "currency": "EUR", "flat_fee": "29.00", "minimum_spend": "0",
    "prices": {
        "api.calls": {"model": "graduated", "included": "1000", "tiers": [
            {"up_to": "100000", "unit_price": "0.0004"},
            {"up_to": "1000000", "unit_price": "0.0003", "flat_fee": "5"},
            {"up_to": None, "unit_price": "0.0002"}]},
        "storage.gb": {"model": "volume", "tiers": [
            {"up_to": "100", "unit_price": "0.10"}, {"up_to": None, "unit_price": "0.08"}]},
        "tokens": {"model": "per_unit", "unit_price": "0.000002"},
    },
}


def seed(bootstrap: str, prefix: str, usage: UsageTable, tenants: int) -> list[str]:
    start, _ = period_bounds(PERIOD)
    stamp = start.isoformat().replace("+00:00", "Z")
    ids = [f"ten_{i:06d}{secrets.token_hex(3)}" for i in range(tenants)]
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True,
                         "linger.ms": 20})
    topic = ADMIN.full_name(prefix)
    records: list[admin_v1.AdminEntity] = [admin_v1.PlanVersion("bench", 1, stamp, PLAN)]
    for n, tenant in enumerate(ids):
        records.append(admin_v1.Tenant(
            tenant, f"Customer {n}", f"billing+{n}@example.com", "EUR", "active", stamp,
            stamp, plan="bench", tax_rate="19" if n % 2 else None,
            billing_address=(f"{n} Market Street", "Dublin")))
        records.append(admin_v1.Subscription(
            tenant, (admin_v1.Assignment("bench", 1, stamp),), stamp))
    for record in records:
        producer.produce(topic, admin_v1.encode(record), key=record.record_key)
        producer.poll(0)
    producer.flush(60)
    values = {}
    for n, tenant in enumerate(ids):
        values[(tenant, PERIOD, "api.calls")] = (1, Decimal(500 + 397 * n), 1)
        values[(tenant, PERIOD, "storage.gb")] = (1, Decimal(n % 250) + Decimal("0.5"), 1)
        values[(tenant, PERIOD, "tokens")] = (1, Decimal(10_000 * (n % 100)), 1)
    usage.write(values)
    return ids


def metric(port: int, name: str) -> int:
    """A counter's value from a worker's /metrics (0 before it is served)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return 0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return 0


def count_done(session: object, keyspace: str) -> tuple[int, int]:
    rows = session.execute(  # type: ignore[attr-defined]
        f"SELECT number, pdf_sha256 FROM {keyspace}.invoices")
    numbered = rendered = 0
    for row in rows:
        numbered += row.number is not None
        rendered += row.pdf_sha256 is not None
    return numbered, rendered


def baselines(session: object, keyspace: str, tenants: int) -> tuple[float, float]:
    """Bare Cassandra writes of N invoice rows, and N PDFs rendered in this process."""
    start, _ = period_bounds(PERIOD)
    plan = to_plan(PlanSpec.model_validate(PLAN), 1)
    party = BillingParty("baseline", "EUR", Party("Baseline Customer", ("1 Road",)), Decimal(19))
    doc = compose_invoice(party, Party("Meterly"), PERIOD, [PlanAssignment(start, plan)],
                          {"api.calls": Decimal(123_456), "storage.gb": Decimal("42.5"),
                           "tokens": Decimal(500_000)}, start + timedelta(days=32))
    assert doc is not None
    body = invoice_codec.encode(doc).decode()
    insert = session.prepare(  # type: ignore[attr-defined]
        f"INSERT INTO {keyspace}.invoices (tenant_id, id, document) VALUES (?, ?, ?)")
    began = time.perf_counter()
    execute_concurrent_with_args(session, insert, [(f"base-{i}", f"b{i}", body)
                                                   for i in range(tenants)], concurrency=64)
    writes = time.perf_counter() - began
    sample = min(tenants, 2000)
    began = time.process_time()
    for i in range(sample):
        render_invoice_pdf(doc.__class__(**{**doc.__dict__, "number": f"B-{i}"}))
    render = (time.process_time() - began) * tenants / sample
    return writes, render


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--renderers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    deployment = fresh_deployment()
    bootstrap, cassandra = deployment.bootstrap, deployment.cassandra
    prefix, keyspace = deployment.prefix, deployment.keyspace
    cluster, session = connect(cassandra, security=deployment.settings.cassandra_security)
    usage = UsageTable(session, keyspace)
    began = time.perf_counter()
    seed(bootstrap, prefix, usage, args.tenants)
    print(f"seeded {args.tenants:,} tenants (admin topic + usage) in "
          f"{time.perf_counter() - began:.1f} s")

    procs = []
    with tempfile.TemporaryDirectory(prefix="meterly-bench-") as tmp, ExitStack() as files:
        clock = Path(tmp) / "clock"
        clock.write_text(datetime(2026, 10, 20, tzinfo=UTC).isoformat())
        env = deployment.env(tmp, admin_token="mop_bench_" + secrets.token_hex(16),
                             clock_file=str(clock), billing_tick_seconds="0.5")
        workers = ["billing"] + ["invoice-renderer"] * args.renderers
        metrics = [free_port() for _ in workers]
        for i, name in enumerate(workers):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "ops.cli", "worker", name],
                env={**env, "METERLY_WORKER_ID": str(i + 1),
                     "METERLY_METRICS_PORT": str(metrics[i])},
                stdout=files.enter_context(open(Path(tmp) / f"{name}-{i}.log", "wb")),
                stderr=subprocess.STDOUT))
        try:
            time.sleep(15)  # the workers start, read the admin topic and join their groups
            _end = period_bounds(PERIOD)[1]
            jvms = jvm_pids()
            watched = {**{f"{w}-{i}": p.pid for i, (w, p) in enumerate(zip(workers, procs,
                                                                          strict=True))},
                       **jvms}
            cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
            clock.write_text((_end + timedelta(hours=1, seconds=16)).isoformat())
            began = time.perf_counter()
            finalized_at = None
            while time.perf_counter() - began < args.timeout:
                # The workers' own Prometheus counters: polling Cassandra instead would
                # scan the invoices table and load the very node being measured.
                numbered = metric(metrics[0], "meterly_invoices_finalized_total")
                rendered = sum(metric(port, "meterly_invoice_pdfs_rendered_total")
                               for port in metrics[1:])
                if finalized_at is None and numbered >= args.tenants:
                    finalized_at = time.perf_counter() - began
                if rendered >= args.tenants:
                    break
                time.sleep(0.25)
            total = time.perf_counter() - began
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in watched.items()}
            numbered, rendered = count_done(session, keyspace)
            if rendered < args.tenants:
                for log in sorted(Path(tmp).glob("*.log")):
                    print(log.name, log.read_text()[-1500:])
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)
    writes, render = baselines(session, keyspace, args.tenants)
    # Left behind, old bench keyspaces would make Cassandra compact them during later runs.
    session.execute(f"DROP KEYSPACE {keyspace}", timeout=120)
    cluster.shutdown()
    print(f"workers: 1 billing, {args.renderers} renderer(s); {numbered:,} finalized, "
          f"{rendered:,} PDFs stored")
    print(f"all finalized (priced, numbered, announced): "
          f"{finalized_at if finalized_at is not None else float('nan'):.1f} s")
    print(f"close {args.tenants:,} tenants incl. PDFs stored: {total:.1f} s "
          f"({args.tenants / total:,.0f} invoices/s); target <= 30 s: "
          f"{'met' if rendered >= args.tenants and total <= 30 else 'MISSED'}")
    print("CPU seconds during the close: " + ", ".join(
        f"{name} {seconds:.1f}" for name, seconds in cpu.items()))
    print(f"baseline: {args.tenants:,} bare invoice-row writes {writes:.1f} s; "
          f"{args.tenants:,} PDFs rendered in one process {render:.1f} s CPU")
    print(f"ratio close / (bare writes + bare rendering): {total / (writes + render):.2f}")


if __name__ == "__main__":
    main()
