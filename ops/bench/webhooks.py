"""Webhook delivery throughput: signed deliveries per second to a local receiver.

    python -m ops.bench.webhooks [--messages 30000] [--dispatchers 1]

Needs Kafka and Cassandra running (``meterly infra up``). On a fresh topic prefix and
keyspace: one tenant with one endpoint pointing at a local aiohttp receiver (its own
process, answering 204 and checking every 100th signature with the ``standardwebhooks``
library when installed); ``--messages`` messages are put on the message topic, then
``--dispatchers`` dispatcher processes start. Measured: from the dispatchers' start until the
receiver has every message (each attempt also written to the Cassandra attempt log).
Baseline in the same run: the same receiver driven by a bare aiohttp client at the same
concurrency (no Kafka, no signing, no log).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from confluent_kafka import Producer

from ops.bench.common import free_port
from ops.cli import prepare
from ops.settings import get_settings
from ops.topics import ensure_topics
from processors.webhook_signing import new_secret
from schemas import admin_v1, webhooks_v1
from schemas.topics import ADMIN, ALL_TOPICS, WEBHOOK_EVENTS
from storage.cassandra import connect

RECEIVER = r'''
import sys
from aiohttp import web
secret = sys.argv[2]
count = 0
bad = 0
try:
    from standardwebhooks.webhooks import Webhook
    verifier = Webhook(secret)
except ImportError:
    verifier = None
async def hook(request):
    global count, bad
    body = await request.read()
    count += 1
    if verifier is not None and count % 100 == 0:
        try:
            verifier.verify(body, dict(request.headers))
        except Exception:
            bad += 1
    return web.Response(status=204)
async def stats(request):
    return web.json_response({"count": count, "bad_signatures": bad})
async def reset(request):
    global count, bad
    count = bad = 0
    return web.json_response({"count": 0})
app = web.Application()
app.router.add_post("/hooks", hook)
app.router.add_get("/stats", stats)
app.router.add_post("/reset", reset)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''


async def stats(base: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as s, s.get(f"{base}/stats") as r:
        result: dict[str, int] = await r.json()
        return result


async def wait_for(base: str, n: int, timeout: float) -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if (await stats(base))["count"] >= n:
            return time.perf_counter() - began
        await asyncio.sleep(0.1)
    raise SystemExit(f"receiver got {(await stats(base))['count']} of {n} in {timeout:.0f} s")


async def baseline(base: str, n: int, concurrency: int) -> float:
    """The receiver alone: a bare client posting ``n`` small bodies."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await s.post(f"{base}/reset")
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                queue.pop()
                async with s.post(f"{base}/hooks", data=b'{"type":"x"}') as r:
                    await r.read()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--dispatchers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    settings = get_settings()
    bootstrap = settings.kafka_bootstrap or "127.0.0.1:9092"
    cassandra = settings.cassandra_hosts or "127.0.0.1:9042"
    prefix = f"bench-{secrets.token_hex(3)}."
    keyspace = f"bench_{secrets.token_hex(3)}"
    scoped = settings.model_copy(update={"topic_prefix": prefix, "cassandra_keyspace": keyspace})
    ensure_topics(bootstrap, prefix, 1, ALL_TOPICS)
    prepare(scoped, bootstrap, cassandra)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    secret = new_secret()
    with tempfile.TemporaryDirectory(prefix="meterly-bench-") as tmp, ExitStack() as stack:
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port), secret])
        stack.callback(receiver.terminate)
        time.sleep(1.5)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        tenant = "ten_bench"
        endpoint = admin_v1.WebhookEndpoint(
            "we_bench", tenant, f"{base}/hooks", webhooks_v1.EVENT_TYPES,
            (admin_v1.SigningSecret(secret),), now, now)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                             "compression.type": "lz4", "enable.idempotence": True})
        producer.produce(ADMIN.full_name(prefix), admin_v1.encode(endpoint),
                         key=endpoint.record_key)
        topic = WEBHOOK_EVENTS.full_name(prefix)
        for i in range(args.messages):
            message = webhooks_v1.Message(f"msg_bench_{i}", webhooks_v1.INVOICE_VOIDED, tenant,
                                          now, {"invoice": {"id": f"inv_{i}", "n": i}})
            producer.produce(topic, webhooks_v1.encode_message(message), key=tenant.encode())
            producer.poll(0)
        producer.flush(60)

        env = {**os.environ, "METERLY_KAFKA_BOOTSTRAP": bootstrap,
               "METERLY_CASSANDRA_HOSTS": cassandra, "METERLY_TOPIC_PREFIX": prefix,
               "METERLY_CASSANDRA_KEYSPACE": keyspace, "METERLY_HOME": tmp,
               "METERLY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
               "METERLY_WEBHOOK_CONCURRENCY": str(args.concurrency)}
        began = time.perf_counter()
        for i in range(args.dispatchers):
            log = stack.enter_context(open(Path(tmp) / f"dispatcher-{i}.log", "wb"))
            proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "worker",
                                     "webhook-dispatcher"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
            stack.callback(proc.wait, 60)
            stack.callback(proc.terminate)
        first = asyncio.run(wait_for(base, 1, 120))
        rest = asyncio.run(wait_for(base, args.messages, 600))
        total = time.perf_counter() - began
        received = asyncio.run(stats(base))
        steady = args.messages / max(rest - first, 1e-9)
        bare = asyncio.run(baseline(base, args.messages, args.concurrency))
    cluster, session = connect(cassandra)
    logged = session.execute(
        f"SELECT count(*) FROM {keyspace}.webhook_attempts WHERE tenant_id = %s "
        "AND endpoint_id = %s", (tenant, "we_bench"), timeout=60).one()[0]
    session.execute(f"DROP KEYSPACE {keyspace}", timeout=120)
    cluster.shutdown()
    print(f"{args.messages:,} signed deliveries, {args.dispatchers} dispatcher(s), "
          f"{args.concurrency} in flight each")
    print(f"first delivery {first:.1f} s after start (process start, group join)")
    print(f"deliveries: {steady:,.0f}/s from first to last; {args.messages / total:,.0f}/s "
          f"including start-up; target >= 5,000/s: {'met' if steady >= 5000 else 'MISSED'}")
    print(f"receiver: {received['count']:,} requests, {received['bad_signatures']} bad "
          f"signatures in the 1 % it verified; attempt log rows: {logged:,}")
    print(f"baseline: bare aiohttp client to the same receiver {args.messages / bare:,.0f}/s; "
          f"ratio {steady / (args.messages / bare):.2f}")


if __name__ == "__main__":
    main()
