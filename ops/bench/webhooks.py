"""Webhook delivery throughput: signed deliveries per second to a local receiver.

    python -m ops.bench.webhooks [--messages 30000] [--dispatchers 1]

Needs Kafka and Cassandra running (``meterly infra up``). On a fresh topic prefix and
keyspace: ``--tenants`` tenants with one endpoint each, pointing at a local receiver (its
own process on uvloop, answering 204 and checking every 100th signature with the
``standardwebhooks`` library). ``--dispatchers`` dispatcher processes start and join their
group; then ``--messages`` messages are put on the message topic. Measured: from the first
message produced until the receiver has every message (each attempt also written to the
Cassandra attempt log).
Baseline in the same run: the same receiver driven by a bare aiohttp client at the same
concurrency (no Kafka, no signing, no log).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from confluent_kafka import Producer

from ops.bench.common import cpu_seconds, free_port, fresh_deployment, jvm_pids
from processors.kafka.config import client_config
from processors.webhooks.core.signing import new_secret
from schemas import admin_v1, webhooks_v1
from schemas.topics import ADMIN, WEBHOOK_EVENTS
from storage.cassandra import connect

RECEIVER = r'''
# A lean HTTP/1.1 receiver (keep-alive, Content-Length bodies, 204 answers) on uvloop: it
# stands in for the tenant's server, which does not share Meterly's CPU in real life, so
# it should take as little of this machine's two cores as it can.
import asyncio, json, sys
import uvloop
secret = sys.argv[2]
try:
    from standardwebhooks.webhooks import Webhook
    verifier = Webhook(secret)
except ImportError:
    verifier = None
state = {"count": 0, "bad": 0}
OK = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"

class Hook(asyncio.Protocol):
    def connection_made(self, transport):
        self.t, self.buf = transport, b""
    def data_received(self, data):
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buf) < head_end + 4 + length:
                return
            body = self.buf[head_end + 4:head_end + 4 + length]
            self.buf = self.buf[head_end + 4 + length:]
            method, path = head[0].split(" ")[:2]
            if path == "/stats":
                out = json.dumps({"count": state["count"], "bad_signatures": state["bad"]})
                self.t.write(("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              f"Content-Length: {len(out)}\r\n\r\n{out}").encode())
                continue
            if path == "/reset":
                state["count"] = state["bad"] = 0
            else:
                state["count"] += 1
                if verifier is not None and state["count"] % 100 == 0:
                    try:
                        verifier.verify(body, headers)
                    except Exception:
                        state["bad"] += 1
            self.t.write(OK)

async def main():
    server = await asyncio.get_running_loop().create_server(Hook, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

uvloop.run(main())
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
    parser.add_argument("--concurrency", type=int, default=1024)
    parser.add_argument("--tenants", type=int, default=64,
                        help="tenants with one endpoint each (messages spread over them)")
    args = parser.parse_args()
    deployment = fresh_deployment()
    bootstrap, cassandra = deployment.bootstrap, deployment.cassandra
    prefix, keyspace = deployment.prefix, deployment.keyspace

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    secret = new_secret()
    with tempfile.TemporaryDirectory(prefix="meterly-bench-") as tmp, ExitStack() as stack:
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port), secret])
        stack.callback(receiver.terminate)
        time.sleep(1.5)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        tenants = [f"ten_bench_{n}" for n in range(args.tenants)]
        producer = Producer({**client_config(bootstrap), "linger.ms": 20,
                             "compression.type": "lz4", "enable.idempotence": True})
        for tenant in tenants:
            endpoint = admin_v1.WebhookEndpoint(
                f"we_{tenant}", tenant, f"{base}/hooks", webhooks_v1.EVENT_TYPES,
                (admin_v1.SigningSecret(secret),), now, now)
            producer.produce(ADMIN.full_name(prefix), admin_v1.encode(endpoint),
                             key=endpoint.record_key)
        producer.flush(30)
        env = deployment.env(tmp, webhook_allow_networks="127.0.0.0/8",
                             webhook_concurrency=str(args.concurrency))
        dispatchers: list[subprocess.Popen[bytes]] = []
        for i in range(args.dispatchers):
            log = stack.enter_context(open(Path(tmp) / f"dispatcher-{i}.log", "wb"))
            proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "worker",
                                     "webhook-dispatcher"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
            stack.callback(proc.wait, 60)
            stack.callback(proc.terminate)
            dispatchers.append(proc)
        # Both dispatchers join the group before any message exists: the figure is the
        # steady state of N dispatchers, not one rebalance.
        time.sleep(8)
        watched = {"receiver": receiver.pid, **{f"dispatcher-{i}": p.pid
                                                for i, p in enumerate(dispatchers)}, **jvm_pids()}
        cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        began = time.perf_counter()
        topic = WEBHOOK_EVENTS.full_name(prefix)
        for i in range(args.messages):
            tenant = tenants[i % len(tenants)]
            message = webhooks_v1.Message(f"msg_bench_{i}", webhooks_v1.INVOICE_VOIDED, tenant,
                                          now, {"invoice": {"id": f"inv_{i}", "n": i}})
            producer.produce(topic, webhooks_v1.encode_message(message), key=tenant.encode())
            producer.poll(0)
        producer.flush(60)

        produced = time.perf_counter() - began
        asyncio.run(wait_for(base, args.messages, 600))
        total = time.perf_counter() - began
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in watched.items()}
        received = asyncio.run(stats(base))
        rate = args.messages / total
        bare = asyncio.run(baseline(base, args.messages, args.concurrency))
    cluster, session = connect(cassandra, security=deployment.settings.cassandra_security)
    outcomes: Counter[str] = Counter()
    for t in tenants:
        for row in session.execute(
                f"SELECT outcome, error FROM {keyspace}.webhook_attempts WHERE tenant_id = %s "
                "AND endpoint_id = %s", (t, f"we_{t}"), timeout=60):
            outcomes[row.outcome if row.outcome == "delivered" else
                     f"{row.outcome}: {(row.error or '')[:60]}"] += 1
    logged = sum(outcomes.values())
    session.execute(f"DROP KEYSPACE {keyspace}", timeout=120)
    cluster.shutdown()
    print(f"{args.messages:,} signed deliveries to {args.tenants} endpoints, "
          f"{args.dispatchers} dispatcher(s), {args.concurrency} in flight each")
    print(f"messages produced in {produced:.1f} s (while the dispatchers were delivering)")
    print(f"deliveries: {rate:,.0f}/s from the first message produced to the last received "
          f"({total:.1f} s); target >= 5,000/s: {'met' if rate >= 5000 else 'MISSED'}")
    print(f"receiver: {received['count']:,} requests, {received['bad_signatures']} bad "
          f"signatures in the 1 % it verified; attempt log rows: {logged:,} "
          f"({received['count'] - args.messages:,} repeats)")
    print("attempts by outcome: " + ", ".join(f"{k} {v:,}" for k, v in outcomes.most_common()))
    print("CPU seconds during the run: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
    print(f"baseline: bare aiohttp client to the same receiver {args.messages / bare:,.0f}/s; "
          f"ratio {rate / (args.messages / bare):.2f}")


if __name__ == "__main__":
    main()
