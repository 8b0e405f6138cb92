"""Counting throughput and memory of one counting worker, against a bare consume loop.

    python -m ops.bench.counting [--events 10000000] [--per-record 100]

Fills a fresh usage topic with ``--events`` unique events packed ``--per-record`` to a
record (100 tenants, 3 meters), then measures, on the same topic and machine:
- baseline: a bare confluent-kafka loop that reads every record, parses it and counts;
- the counting worker (``meterly worker counter``): events/s from its first to its last
  committed transaction, its peak resident memory, and that its totals are exact.
Kafka must be running (``meterly infra up``, or METERLY_KAFKA_BOOTSTRAP).
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter as Tally
from decimal import Decimal
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from ops.infra.process import resident_bytes
from ops.topics import ensure_topics
from processors.kafka.config import client_config
from processors.kafka.offsets import consumer_lag
from processors.runtime.settings import get_settings
from processors.usage.counter import GROUP
from schemas import counter_changelog_v1 as changelog
from schemas import usage_v1
from schemas.topics import COUNTER_CHANGELOG, USAGE
from schemas.usage_v1 import UsageEvent, UsageRecord


def fill(bootstrap: str, topic: str, events: int, per_record: int) -> float:
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True,
                         "acks": "all", "linger.ms": 20, "compression.type": "lz4",
                         "batch.size": 1_000_000, "queue.buffering.max.kbytes": 1_000_000})
    now_ms = int(time.time() * 1000)
    begun = time.monotonic()
    for start in range(0, events, per_record):
        tenant = f"tenant-{(start // per_record) % 100}"
        batch = tuple(
            UsageEvent(f"e{n}", "bench", f"m{n % 3}", now_ms, Decimal(1))
            for n in range(start, min(events, start + per_record))
        )
        while True:
            try:
                producer.produce(topic, usage_v1.encode(UsageRecord(tenant, batch)),
                                 key=tenant.encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(300)
    return time.monotonic() - begun


def bare_loop(bootstrap: str, topic: str, events: int) -> float:
    group = f"bare-{secrets.token_hex(4)}"
    consumer = Consumer({**client_config(bootstrap), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    counts: Tally[str] = Tally()
    seen = 0
    begun = None
    while seen < events:
        for msg in consumer.consume(num_messages=1000, timeout=1.0):
            if msg.error():
                continue
            if begun is None:
                begun = time.monotonic()
            doc = orjson.loads(msg.value() or b"{}")
            for event in doc["events"]:
                counts[event[2]] += 1
            seen += len(doc["events"])
    consumer.close()
    assert begun is not None
    return time.monotonic() - begun


def lag(consumer: Consumer, topic: str, partitions: int) -> int:
    return consumer_lag(consumer, [TopicPartition(topic, p) for p in range(partitions)])


def worker_run(bootstrap: str, prefix: str, home: Path, events: int) -> tuple[float, int, int]:
    env = {**os.environ, "METERLY_KAFKA_BOOTSTRAP": bootstrap, "METERLY_TOPIC_PREFIX": prefix,
           "METERLY_HOME": str(home), "METERLY_WORKER_ID": "bench",
           "METERLY_CASSANDRA_HOSTS": os.environ.get("METERLY_CASSANDRA_HOSTS", "127.0.0.1")}
    topic = USAGE.full_name(prefix)
    watcher = Consumer({**client_config(bootstrap), "group.id": f"{prefix}{GROUP}",
                        "enable.auto.commit": False})
    initial = lag(watcher, topic, USAGE.partitions)
    proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "worker", "counter"], env=env,
                            stdout=subprocess.DEVNULL, stderr=(home / "worker.log").open("wb"))
    peak = 0
    begun = None
    remaining = initial
    try:
        while remaining > 0:
            time.sleep(0.5)
            peak = max(peak, resident_bytes(proc.pid))
            remaining = lag(watcher, topic, USAGE.partitions)
            if begun is None and remaining < initial:
                begun = time.monotonic()
            if proc.poll() is not None:
                raise SystemExit(f"worker exited with {proc.returncode}:\n"
                                 f"{(home / 'worker.log').read_text()[-2000:]}")
        elapsed = time.monotonic() - (begun or time.monotonic())
        final = resident_bytes(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        watcher.close()
    return elapsed, peak, final


def counted_total(bootstrap: str, topic: str) -> int:
    group = f"check-{secrets.token_hex(4)}"
    consumer = Consumer({**client_config(bootstrap), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    consumer.subscribe([topic])
    latest: dict[bytes, int] = {}
    eof: set[int] = set()
    while len(eof) < COUNTER_CHANGELOG.partitions:
        for msg in consumer.consume(num_messages=10_000, timeout=1.0):
            err = msg.error()
            if err is not None:
                eof.add(msg.partition() or 0)
                continue
            key, value = msg.key() or b"", msg.value()
            if key[:1] == changelog.COUNTER and value is not None:
                latest[key] = changelog.parse_counter(key, value)[1]
    consumer.close()
    return sum(latest.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--per-record", type=int, default=100)
    args = parser.parse_args()
    bootstrap = get_settings().kafka_bootstrap or "127.0.0.1:9092"
    prefix = f"bench-{secrets.token_hex(3)}."
    ensure_topics(bootstrap, prefix, 1, (USAGE, COUNTER_CHANGELOG))
    topic = USAGE.full_name(prefix)
    fill_s = fill(bootstrap, topic, args.events, args.per_record)
    print(f"filled {args.events:,} events in {fill_s:.1f} s "
          f"({args.events / fill_s:,.0f} events/s, raw producer, {args.per_record} per record)")
    bare_s = bare_loop(bootstrap, topic, args.events)
    with tempfile.TemporaryDirectory(prefix="meterly-bench-") as tmp:
        worker_s, peak, final = worker_run(bootstrap, prefix, Path(tmp), args.events)
        store = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    total = counted_total(bootstrap, COUNTER_CHANGELOG.full_name(prefix))
    bare_rate, worker_rate = args.events / bare_s, args.events / worker_s
    print(f"bare consume-and-count loop: {bare_rate:,.0f} events/s")
    print(f"counting worker: {worker_rate:,.0f} events/s ({worker_rate / bare_rate:.2f} of bare)")
    print(f"counting worker memory: peak {peak / 2**20:.0f} MiB, at end {final / 2**20:.0f} MiB "
          f"resident with {args.events:,} remembered ids; RocksDB on disk {store / 2**20:.0f} MiB")
    verdict = "OK" if total == args.events else "MISMATCH"
    print(f"exact: counted {total:,} of {args.events:,} -> {verdict}")


if __name__ == "__main__":
    main()
