"""HTTP ingest throughput and latency, each beside a baseline from the same run.

    python -m ops.bench.ingest [--seconds 15] [--processes 2] [--connections 64]

Needs Kafka and Cassandra running (``meterly infra up``) and ``wrk`` (Debian: apt-get
install wrk). Starts ``meterly gateway`` with ``--processes`` processes on a free port and
a fresh topic prefix, creates a tenant and key, then measures with wrk:
1. batched ingest, POST /v1/events with 100 unique CloudEvents per request, against a raw
   confluent-kafka producer writing the same events, packed 100 to a record, to the same
   topic (the gateway writes the same records);
2. single-event metered calls, GET /v1/resources/bench, against the bare async FastAPI
   endpoint /healthz on the same server.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from confluent_kafka import Producer

from ops.bench.common import free_port, fresh_deployment, tenant_key, wait_healthy
from processors.kafka.config import client_config
from schemas import usage_v1
from schemas.topics import USAGE
from schemas.usage_v1 import UsageEvent, UsageRecord

BATCH_LUA = """
counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
request = function()
  counter = counter + 1
  local parts = {}
  for i = 1, 100 do
    parts[i] = '{"specversion":"1.0","id":"' .. tid .. '-' .. counter .. '-' .. i ..
      '","source":"bench","type":"api.calls","data":{"quantity":1}}'
  end
  return wrk.format("POST", "/v1/events", {
    ["Authorization"] = "Bearer KEY",
    ["Content-Type"] = "application/json"}, "[" .. table.concat(parts, ",") .. "]")
end
"""


def wrk(url: str, seconds: int, connections: int, script: Path | None = None,
        headers: dict[str, str] | None = None) -> tuple[float, float, float, int]:
    """requests/s, p50 ms, p99 ms and non-2xx count from one wrk run."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m is not None, out
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, pct("50"), pct("99"), int(bad.group(1)) if bad else 0


def raw_producer(bootstrap: str, topic: str, events: int) -> float:
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True,
                         "acks": "all", "linger.ms": 2, "compression.type": "lz4"})
    now_ms = int(time.time() * 1000)
    begun = time.monotonic()
    for start in range(0, events, 100):
        batch = tuple(UsageEvent(f"raw-{n}", "bench", "api.calls", now_ms, Decimal(1))
                      for n in range(start, start + 100))
        while True:
            try:
                producer.produce(topic, usage_v1.encode(UsageRecord("raw", batch)), key=b"raw")
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    return events / (time.monotonic() - begun)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (Debian: apt-get install -y wrk)")
    deployment = fresh_deployment()
    token = "mop_bench_" + secrets.token_hex(16)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="meterly-bench-") as tmp:
        env = deployment.env(tmp, admin_token=token, port=str(port),
                             gateway_processes=str(args.processes),
                             rate_limit_per_second="100000000")
        gateway = subprocess.Popen([sys.executable, "-m", "ops.cli", "gateway"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base)
            time.sleep(2)  # every process up
            key = tenant_key(base, token, "bench")
            time.sleep(1.5)  # the key reaches every gateway process through the admin topic
            script = Path(tmp) / "batch.lua"
            script.write_text(BATCH_LUA.replace("KEY", key))
            raw = raw_producer(deployment.bootstrap, USAGE.full_name(deployment.prefix),
                               500_000)
            rps, p50, p99, bad = wrk(f"{base}/v1/events", args.seconds, args.connections,
                                     script)
            batched = rps * 100
            single = wrk(f"{base}/v1/resources/bench", args.seconds, args.connections,
                         headers={"Authorization": f"Bearer {key}"})
            bare = wrk(f"{base}/healthz", args.seconds, args.connections)
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
    print(f"gateway processes: {args.processes}, wrk -t2 -c{args.connections} "
          f"-d{args.seconds}s, Kafka and Cassandra on the same 2 cores")
    print(f"raw confluent-kafka producer, 100 events per record: {raw:,.0f} events/s")
    print(f"batched ingest POST /v1/events x100: {batched:,.0f} events/s "
          f"({batched / raw:.2f} of raw), p50 {p50:.1f} ms, p99 {p99:.1f} ms, non-2xx {bad}")
    print(f"single-event GET /v1/resources/bench: {single[0]:,.0f} requests/s, "
          f"p50 {single[1]:.1f} ms, p99 {single[2]:.1f} ms, non-2xx {single[3]}")
    print(f"bare FastAPI GET /healthz: {bare[0]:,.0f} requests/s, p50 {bare[1]:.1f} ms, "
          f"p99 {bare[2]:.1f} ms ({single[0] / bare[0]:.2f} of bare)")


if __name__ == "__main__":
    main()
