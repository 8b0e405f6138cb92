"""Test load for the counting path: packed usage records with known duplicates and totals."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from processors.kafka.config import client_config
from processors.kafka.offsets import consumer_lag
from processors.kafka.retry import with_retries
from processors.runtime.settings import Settings
from processors.usage.core.aggregations import GroupState
from processors.usage.core.counting import identity_hash
from processors.usage.core.periods import period_of_ms
from schemas import counter_changelog_v1 as changelog
from schemas import usage_v1
from schemas.counter_changelog_v1 import CounterKey, GroupKey
from schemas.usage_v1 import MeterContribution, UsageEvent, UsageRecord

Totals = dict[CounterKey, tuple[int, Decimal]]
#: A defined meter's group -> (events counted, the aggregate).
GroupTotals = dict[GroupKey, tuple[int, Decimal]]
#: The event type whose events carry contributions to one meter of every aggregation, by
#: region (docs/meters.md); the other types count as before.
METERED_TYPE = "meter-metered"
DIMENSIONAL = (("dim_count", "count"), ("dim_sum", "sum"), ("dim_max", "max"),
               ("dim_latest", "latest"), ("dim_unique", "unique_count"))
REGIONS = ("eu", "us", "ap")


@dataclass
class Load:
    records: list[UsageRecord]
    expected: Totals
    unique: int
    sent: int
    #: What the defined meters must hold, worked out from the unique events directly.
    groups: GroupTotals = field(default_factory=dict)


def _metered(event_id: str, source: str, time_ms: int, quantity: Decimal, region: str,
             user: str) -> UsageEvent:
    group = (("region", region),)
    return UsageEvent(event_id, source, METERED_TYPE, time_ms, quantity, None, None, tuple(
        MeterContribution(meter, 1, aggregation, group,
                          f'"{user}"' if aggregation == "unique_count" else
                          ("1" if aggregation == "count" else str(quantity)))
        for meter, aggregation in DIMENSIONAL))


def expected_groups(tenant_events: dict[str, list[UsageEvent]]) -> GroupTotals:
    """The naive reference: per group, the unique events' count, sum, max, the latest's
    value (by event time, then identity hash) and the number of distinct values."""
    out: GroupTotals = {}
    for tenant, events in tenant_events.items():
        by_group: dict[tuple[str, str, str], list[UsageEvent]] = defaultdict(list)
        for e in events:
            for c in e.contributions or ():
                by_group[(period_of_ms(e.time_ms), c.meter, c.group[0][1])].append(e)
        for (period, meter, region), members in by_group.items():
            values = {e.id: next(c.value for c in e.contributions or () if c.meter == meter)
                      for e in members}
            aggregation = dict(DIMENSIONAL)[meter]
            if aggregation == "unique_count":
                value = Decimal(len(set(values.values())))
            elif aggregation == "max":
                value = max(Decimal(v) for v in values.values())
            elif aggregation == "latest":
                last = max(members, key=lambda e: (e.time_ms,
                                                   identity_hash(tenant, e.source, e.id)))
                value = Decimal(values[last.id])
            else:
                value = sum((Decimal(v) for v in values.values()), Decimal(0))
            out[(tenant, period, meter, (("region", region),))] = (len(members), value)
    return out


def make_load(events: int, duplicate_share: float, tenants: int = 20, meters: int = 3,
              per_record: int = 50, seed: int = 7, tenant_prefix: str = "tenant-",
              metered: bool = False) -> Load:
    """``events`` deliveries, of which ``duplicate_share`` repeat an earlier identity.

    Duplicates land in later records, in the same record, and (the identity is per tenant
    and source) never across tenants. Quantities have three decimals to catch float use.
    With ``metered``, a quarter of the events also contribute to a defined meter of every
    aggregation, grouped by region (``DIMENSIONAL``).
    """
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    seen: dict[str, list[UsageEvent]] = defaultdict(list)
    expected: dict[CounterKey, list[int | Decimal]] = {}
    by_tenant: dict[str, list[UsageEvent]] = defaultdict(list)
    unique_metered: dict[str, list[UsageEvent]] = defaultdict(list)
    unique = 0
    for n in range(events):
        tenant = f"{tenant_prefix}{rng.randrange(tenants)}"
        if seen[tenant] and rng.random() < duplicate_share:
            by_tenant[tenant].append(rng.choice(seen[tenant]))
            continue
        event = UsageEvent(
            id=f"evt-{n}", source=f"svc-{rng.randrange(3)}", meter=f"meter-{rng.randrange(meters)}",
            time_ms=now_ms - rng.randrange(60_000),
            quantity=Decimal(rng.randrange(1, 100_000)) / 1000,
        )
        if metered and rng.random() < 0.25:
            event = _metered(event.id, event.source, event.time_ms, event.quantity,
                             rng.choice(REGIONS), f"user-{rng.randrange(200)}")
            unique_metered[tenant].append(event)
        seen[tenant].append(event)
        by_tenant[tenant].append(event)
        unique += 1
        key = (tenant, period_of_ms(event.time_ms), event.meter)
        slot = expected.setdefault(key, [0, Decimal(0)])
        slot[0] = int(slot[0]) + 1
        slot[1] = Decimal(slot[1]) + event.quantity
    records = []
    for tenant, tenant_events in by_tenant.items():
        for i in range(0, len(tenant_events), per_record):
            records.append(UsageRecord(tenant, tuple(tenant_events[i:i + per_record])))
    rng.shuffle(records)  # interleave tenants; per-tenant order does not matter for counts
    totals = {k: (int(v[0]), Decimal(v[1])) for k, v in expected.items()}
    return Load(records, totals, unique, events, expected_groups(unique_metered))


class LoadProducer(threading.Thread):
    """Writes the load's records to the usage topic over ``seconds``, keyed by tenant."""

    def __init__(self, bootstrap: str, topic: str, records: list[UsageRecord], seconds: float):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.records, self.seconds = bootstrap, topic, records, seconds
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = Producer({**client_config(self.bootstrap), "enable.idempotence": True,
                                 "acks": "all", "linger.ms": 5,
                                 "message.timeout.ms": 300_000})
            begun = time.monotonic()
            for i, record in enumerate(self.records):
                producer.produce(self.topic, usage_v1.encode(record), key=record.tenant.encode())
                producer.poll(0)
                ahead = begun + self.seconds * (i + 1) / len(self.records) - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if producer.flush(300) != 0:
                raise RuntimeError("records left unsent")
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test thread
            self.error = exc


@dataclass
class WorkerProcess:
    """``meterly worker NAME`` as a real process that tests can SIGKILL and restart."""

    name: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    kills: int = 0
    #: Times the process exited on its own and was restarted, as `meterly run` would.
    restarts: int = 0
    _logs: list[object] = field(default_factory=list)
    _down: bool = True
    _stopped: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _watchdog: threading.Thread | None = None
    #: Extra environment for the next launches, one entry each (``arm``).
    _armed: list[dict[str, str]] = field(default_factory=list)

    def start(self) -> None:
        with self._lock:
            self._launch()
            self._down = False
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, daemon=True)
            self._watchdog.start()

    def arm(self, *failpoints: str) -> None:
        """Set ``METERLY_FAILPOINTS`` for the next launch only, or for as many next launches
        as plans are given, one each, in order: the restart after the last failpoint fired
        runs clean, with no race against the watchdog."""
        with self._lock:
            self._armed = [{"METERLY_FAILPOINTS": plan} for plan in failpoints]

    def _launch(self) -> None:
        out = self.log.open("ab")
        self._logs.append(out)
        env = {**self.env, **(self._armed.pop(0) if self._armed else {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "worker", self.name],
                                     env=env, stdout=out, stderr=subprocess.STDOUT)

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            with self._lock:
                if self._stopped:
                    return
                if not self._down and self.proc is not None and self.proc.poll() is not None:
                    self.restarts += 1
                    time.sleep(1.0)  # the supervisor's first back-off
                    self._launch()

    def kill(self) -> float:
        """SIGKILL the running process and return the monotonic time it landed.

        Asserts the fault landed on a live process (it was running, not exited or restarting)
        and that it died of the signal, so ``kills`` counts kills that happened, not calls."""
        with self._lock:
            assert self.proc is not None, f"{self.name} was never started"
            assert self.proc.poll() is None, (
                f"{self.name} was not running when the kill came (exit {self.proc.returncode})")
            self._down = True
            self.proc.send_signal(signal.SIGKILL)
            landed = time.monotonic()
            code = self.proc.wait(30)
            assert code == -signal.SIGKILL, f"{self.name} exited {code}, not of SIGKILL"
            self.kills += 1
            return landed

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and state but does nothing (a GC pause, a
        frozen VM); ``resume`` sends SIGCONT. A process that exited (a zombie that found
        itself fenced exits for its restart) is paused once the watchdog restarted it."""
        deadline = time.monotonic() + 30
        while True:
            with self._lock:
                if self.proc is not None and self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGSTOP)
                    return
            assert time.monotonic() < deadline, "the worker never came back to be paused"
            time.sleep(0.1)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for out in self._logs:
            out.close()  # type: ignore[attr-defined]


def worker_env(settings: Settings, home: Path, worker_id: str) -> dict[str, str]:
    return {
        **os.environ,
        "METERLY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "METERLY_CASSANDRA_HOSTS": settings.cassandra_hosts or "",
        "METERLY_CASSANDRA_KEYSPACE": settings.cassandra_keyspace,
        "METERLY_TOPIC_PREFIX": settings.topic_prefix,
        "METERLY_HOME": str(home),
        "METERLY_WORKER_ID": worker_id,
    }


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({**client_config(bootstrap), "group.id": group,
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        tps = [TopicPartition(topic, p) for p in meta.partitions]
        return with_retries(lambda: consumer_lag(consumer, tps, timeout=30), "group lag")
    finally:
        consumer.close()


def wait_for(condition: object, timeout: float, what: str, step: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def changelog_totals(bootstrap: str, topic: str) -> Totals:
    """The latest committed counter values in the changelog, read from the beginning."""
    return changelog_state(bootstrap, topic)[0]


def changelog_state(bootstrap: str, topic: str) -> tuple[Totals, GroupTotals]:
    """The latest committed counters and defined meters' groups (events, aggregate) in the
    changelog, read from the beginning."""
    from tests.kafka_helpers import read_all_records

    totals: Totals = {}
    groups: GroupTotals = {}
    for key, value in read_all_records(bootstrap, topic):
        if key[:1] == changelog.COUNTER and value is not None:
            ckey, count, total = changelog.parse_counter(key, value)
            totals[ckey] = (count, total)
        elif key[:1] == changelog.GROUP and value is not None:
            gkey, (aggregation, count, total, maximum, latest, distinct) = \
                changelog.parse_group(key, value)
            state = GroupState(count, total, maximum, latest, distinct)
            groups[gkey] = (count, state.value(aggregation))  # type: ignore[arg-type]
    return totals, groups
