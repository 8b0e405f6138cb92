"""Freshness: from an ingest acknowledgement to the event being visible in the usage API.

    python -m ops.bench.freshness [--rate 10000] [--seconds 20]

Needs Kafka and Cassandra running (``meterly infra up``). Starts a gateway, a counting
worker and the mirror on a fresh topic prefix; sends ``--rate`` events/s (requests of 100
events) for one tenant, and every 100 ms one probe event of a separate meter for the same
tenant. A poller reads ``GET /v1/usage`` continuously; a probe's freshness is the time
from its 200 answer until the probe meter's count includes it. Baseline: the round trip of
``GET /v1/usage`` itself, measured by the same poller.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from ops.bench.common import free_port, fresh_deployment, tenant_key, wait_healthy


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(base: str, key: str, rate: int, seconds: float) -> tuple[list[float],
                                                                         list[float], int]:
    headers = {"Authorization": f"Bearer {key}"}
    acked: dict[int, float] = {}
    visible: dict[int, float] = {}
    round_trips: list[float] = []
    sent = 0
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30,
                                 limits=httpx.Limits(max_connections=64)) as client:

        async def load() -> None:
            nonlocal sent
            interval = 100 / rate
            n = 0
            pending: set[asyncio.Task[httpx.Response]] = set()
            next_at = time.monotonic()
            while time.monotonic() < stop:
                body = [{"specversion": "1.0", "id": f"l-{n}-{i}", "source": "load",
                         "type": "load"} for i in range(100)]
                n += 1
                task = asyncio.create_task(client.post("/v1/events", json=body))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 100
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*pending)

        async def probes() -> None:
            k = 0
            while time.monotonic() < stop:
                k += 1
                r = await client.post("/v1/events", json=[{
                    "specversion": "1.0", "id": f"probe-{k}", "source": "probe",
                    "type": "probe"}])
                assert r.status_code == 200, r.text
                acked[k] = time.monotonic()
                await asyncio.sleep(0.1)

        async def poll() -> None:
            while time.monotonic() < stop + 10:
                begun = time.monotonic()
                r = await client.get("/v1/usage")
                now = time.monotonic()
                round_trips.append(now - begun)
                count = next((m["count"] for m in r.json()["meters"]
                              if m["meter"] == "probe"), 0)
                for k in range(1, count + 1):
                    visible.setdefault(k, now)
                if acked and len(visible) >= len(acked) and time.monotonic() > stop:
                    return
                await asyncio.sleep(0.005)

        await asyncio.gather(load(), probes(), poll())
    fresh = [visible[k] - acked[k] for k in acked if k in visible]
    return fresh, round_trips, sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    deployment = fresh_deployment()
    token = "mop_bench_" + secrets.token_hex(16)
    port = free_port()
    procs = []
    with tempfile.TemporaryDirectory(prefix="meterly-bench-") as tmp:
        env = deployment.env(tmp, admin_token=token, port=str(port),
                             rate_limit_per_second="100000000")
        for args_ in (["gateway"], ["worker", "counter"], ["worker", "mirror"]):
            procs.append(subprocess.Popen([sys.executable, "-m", "ops.cli", *args_], env=env,
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base)
            key = tenant_key(base, token, "fresh")
            time.sleep(5)  # the workers join their groups
            fresh, trips, sent = asyncio.run(measure(base, key, args.rate, args.seconds))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
    print(f"load: {sent / args.seconds:,.0f} events/s offered for {args.seconds:.0f} s, "
          f"{len(fresh)} probes")
    print(f"freshness (ack -> visible in GET /v1/usage): p50 {statistics.median(fresh) * 1000:.0f}"
          f" ms, p99 {quantile(fresh, 0.99) * 1000:.0f} ms, max {max(fresh) * 1000:.0f} ms")
    print(f"baseline GET /v1/usage round trip: p50 {statistics.median(trips) * 1000:.1f} ms, "
          f"p99 {quantile(trips, 0.99) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
