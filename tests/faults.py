"""The fault scenarios, shared by the fault tests and the fault report (``ops/bench/faults.py``).

Each scenario runs a load, injects its planned faults, and returns an ``Outcome``: where each
fault landed (the worker's protocol step), whether it landed on a live process with the load
still flowing and the process recovered after it, and the exact comparison of what was
counted (and, for the HTTP path, invoiced) with what the load generated: events lost and
events counted twice. A test asserts ``outcome.check()``; the report repeats each scenario
and prints a table of outcomes. Every scenario takes a seed and prints it, so a failure
replays: ``pytest ... -k <scenario>`` with ``METERLY_FAULT_SEED=<seed>``.

The steps named are those of the numbered protocols in ``processors/usage/counter.py``,
``processors/usage/mirror.py`` and ``processors/usage/ingest_validator.py``.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from ops.topics import ensure_topics
from processors.kafka.config import client_config
from processors.kafka.retry import with_retries
from processors.runtime.settings import Settings
from processors.usage.counter import GROUP
from processors.usage.mirror_table import UsageTable
from schemas.topics import (
    COUNTER_CHANGELOG,
    MIRROR_GROUP,
    USAGE,
)
from storage.cassandra import connect
from tests.usage_load import (
    GroupTotals,
    LoadProducer,
    Totals,
    WorkerProcess,
    changelog_state,
    group_lag,
    make_load,
    wait_for,
    worker_env,
)

#: Counting-path scenarios (usage records written straight to ``usage.v1``) the suite runs.
COUNTING = ("counter.before-commit", "counter.after-commit", "counter.restoring",
            "mirror.after-write", "counter-sigkill", "counter-zombie", "broker-restart")


#: The line of ``processors.kafka.transactions.Watchdog`` when a commit outlived its deadline.
STUCK_COMMIT = "transaction commit not done after"


def seed_for(scenario: str) -> int:
    """A fresh seed, or ``METERLY_FAULT_SEED`` to replay one; printed either way."""
    seed = int(os.environ.get("METERLY_FAULT_SEED") or random.randrange(1 << 30))
    print(f"fault scenario {scenario}: seed {seed} (replay with METERLY_FAULT_SEED={seed})")
    return seed


@dataclass
class Fault:
    """One injected fault and the evidence of where it landed."""

    kind: str
    target: str
    step: str = "?"
    alive_before: bool = False
    flowing: bool = False
    recovered: bool = False
    at: float = 0.0

    @property
    def landed(self) -> bool:
        return self.alive_before and self.flowing and self.recovered


@dataclass
class Outcome:
    scenario: str
    seed: int
    planned: int
    faults: list[Fault] = field(default_factory=list)
    events: int = 0
    lost: int = 0
    double: int = 0
    #: Keys whose count agrees but whose sum does not (a wrong quantity, not a lost event).
    wrong: int = 0
    #: The defined meters' groups (every aggregation): events lost or counted twice in a
    #: group, and groups whose aggregate is wrong though their events are right.
    group_lost: int = 0
    group_double: int = 0
    group_wrong: int = 0
    groups: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def landed(self) -> int:
        return sum(f.landed for f in self.faults)

    @property
    def exact(self) -> bool:
        return (self.lost == 0 and self.double == 0 and self.wrong == 0
                and self.group_lost == 0 and self.group_double == 0 and self.group_wrong == 0)

    @property
    def passed(self) -> bool:
        """Every planned fault landed, and the totals are exact."""
        return self.landed == self.planned == len(self.faults) and self.exact

    def check(self) -> None:
        print(self.summary())
        assert self.landed == self.planned == len(self.faults), self.summary()
        assert self.exact, self.summary()

    def summary(self) -> str:
        faults = "; ".join(
            f"{f.kind} {f.target} at {f.step} (alive {f.alive_before}, flowing {f.flowing}, "
            f"recovered {f.recovered})" for f in self.faults)
        return (f"{self.scenario} seed {self.seed}: {self.landed}/{self.planned} faults landed "
                f"[{faults}]; {self.events} events, lost {self.lost}, double {self.double}, "
                f"wrong sums {self.wrong}; {self.groups} meter groups of every aggregation, "
                f"lost {self.group_lost}, double {self.group_double}, wrong "
                f"{self.group_wrong}; {' '.join(self.notes)}")


def compare(expected: Totals, counted: Totals) -> tuple[int, int, int]:
    """(events lost, events counted twice, keys with a wrong sum)."""
    lost = double = wrong = 0
    for key in expected.keys() | counted.keys():
        want_count, want_sum = expected.get(key, (0, Decimal(0)))
        got_count, got_sum = counted.get(key, (0, Decimal(0)))
        if got_count < want_count:
            lost += want_count - got_count
        elif got_count > want_count:
            double += got_count - want_count
        elif got_sum != want_sum:
            wrong += 1
    return lost, double, wrong


# --- The counting path ----------------------------------------------------------------------

#: Sized so that a run takes about half a minute: long enough for faults mid-stream.
COUNTING_EVENTS = 80_000
COUNTING_SECONDS = 14.0


def mirror_groups(settings: Settings, keys: GroupTotals) -> GroupTotals:
    """The defined meters' groups as the Cassandra mirror holds them."""
    assert settings.cassandra_hosts
    cluster, session = connect(settings.cassandra_hosts, security=settings.cassandra_security)
    try:
        table = UsageTable(session, settings.cassandra_keyspace)
        found: GroupTotals = {}
        for tenant, period in {(t, p) for t, p, _m, _g in keys}:
            for g in table.read_groups(tenant, period):
                found[(tenant, period, g.meter, g.group)] = (g.count, g.value)
        return found
    finally:
        cluster.shutdown()


def mirror_totals(settings: Settings, keys: Totals) -> Totals:
    assert settings.cassandra_hosts
    cluster, session = connect(settings.cassandra_hosts, security=settings.cassandra_security)
    try:
        table = UsageTable(session, settings.cassandra_keyspace)
        found: Totals = {}
        for tenant, period in {(t, p) for t, p, _m in keys}:
            for usage in table.read(tenant, period):
                found[(tenant, period, usage.meter)] = (usage.count, usage.total)
        return found
    finally:
        cluster.shutdown()


def committed_offsets(bootstrap: str, group: str, topic: str) -> int:
    """The sum of ``group``'s committed offsets on ``topic`` (progress, across restarts)."""
    consumer = Consumer({**client_config(bootstrap), "group.id": group,
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        tps = [TopicPartition(topic, p) for p in meta.partitions]
        got = with_retries(lambda: consumer.committed(tps, timeout=30), "committed offsets")
        return sum(max(tp.offset, 0) for tp in got)
    finally:
        consumer.close()


def log_has(worker: WorkerProcess, text: str, since: int = 0) -> bool:
    return text in worker.log.read_bytes()[since:].decode(errors="replace")


def _log_size(worker: WorkerProcess) -> int:
    return worker.log.stat().st_size if worker.log.exists() else 0


def _recovered(worker: WorkerProcess, since: int, timeout: float = 60) -> bool:
    """The worker is running again and working: a counter has joined (assigned partitions
    after ``since``); the mirror has committed past where it stood."""
    if worker.name == "mirror":
        env = worker.env
        bootstrap, prefix = env["METERLY_KAFKA_BOOTSTRAP"], env["METERLY_TOPIC_PREFIX"]
        group, topic = f"{prefix}{MIRROR_GROUP}", COUNTER_CHANGELOG.full_name(prefix)
        before = committed_offsets(bootstrap, group, topic)
        return wait_until_or_false(lambda: worker.alive() and committed_offsets(
            bootstrap, group, topic) > before, timeout, every=1.0)
    return wait_until_or_false(
        lambda: worker.alive() and log_has(worker, "assigned partitions", since), timeout)


def run_counting(settings: Settings, tmp: Path, scenario: str, seed: int,
                 restart_kafka: Callable[[], None] | None = None,
                 events: int = COUNTING_EVENTS, seconds: float = COUNTING_SECONDS) -> Outcome:
    """Count a generated load on fresh topics while ``scenario``'s faults land; compare the
    changelog and the Cassandra mirror with the load's own totals."""
    assert settings.kafka_bootstrap
    bootstrap = settings.kafka_bootstrap
    prefix = f"{settings.topic_prefix}f{secrets.token_hex(3)}."
    settings = settings.model_copy(update={"topic_prefix": prefix})
    ensure_topics(bootstrap, prefix, 1)
    rng = random.Random(seed)
    began = time.monotonic()
    two = scenario in ("counter-sigkill", "counter-zombie")
    if scenario in ("counter-zombie", "counter-sigkill"):
        seconds = max(seconds, 26.0)  # a downtime past the 10 s session timeout, mid-stream
    if scenario == "broker-restart":
        seconds = max(seconds, 30.0)  # load flowing well after the broker is back
    load = make_load(events, duplicate_share=0.10, seed=seed,
                     tenant_prefix=f"t{secrets.token_hex(3)}-", metered=True)
    counters = [WorkerProcess("counter", worker_env(settings, tmp / f"w{i}", str(i)),
                              tmp / f"counter-{i}.log") for i in range(1, 3 if two else 2)]
    mirror = WorkerProcess("mirror", worker_env(settings, tmp / "m", "m"), tmp / "mirror.log")
    victim = mirror if scenario.startswith("mirror.") else counters[-1]
    failpoint = "." in scenario
    planned = {"counter-sigkill": 3, "counter-zombie": 1}.get(scenario, 1)
    outcome = Outcome(scenario, seed, planned, events=load.unique, groups=len(load.groups))
    plan = "counter.restoring@1" if scenario == "counter.restoring" else \
        f"{scenario}@{rng.randint(3, 12)}"
    if failpoint and scenario != "counter.restoring":
        victim.arm(plan)
    for w in [*counters, mirror]:
        w.start()
    producer = LoadProducer(bootstrap, USAGE.full_name(prefix), load.records, seconds)
    usage_group = f"{prefix}{GROUP}"
    try:
        wait_for(lambda: all(log_has(w, "assigned partitions") for w in counters), 60,
                 "the counters to join")
        producer.start()
        if failpoint:
            outcome.faults.append(_failpoint(scenario, victim, producer, rng, plan))
        elif scenario == "counter-sigkill":
            for downtime in (0.5, 1.0, 12.0):  # the long one moves its partitions over
                time.sleep(rng.uniform(1.0, 3.0))
                outcome.faults.append(_kill_and_restart(victim, producer, downtime, counters[0]))
        elif scenario == "counter-zombie":
            outcome.faults.append(_zombie(victim, counters[0], producer, rng))
        elif scenario == "broker-restart":
            assert restart_kafka is not None, "the broker restart needs a Kafka it may restart"
            outcome.faults.append(_broker_restart(bootstrap, usage_group, prefix, producer,
                                                  counters[0], restart_kafka, rng))
        else:
            raise ValueError(f"unknown counting scenario {scenario!r}")
        producer.join(timeout=600)
        assert producer.error is None, producer.error
        wait_for(lambda: group_lag(bootstrap, usage_group, USAGE.full_name(prefix)) == 0,
                 240, "the counters to consume every record")
        for w in counters:
            if not w.alive():
                outcome.notes.append(f"{w.log.name} not running at the end")
        # Self-restarts beyond those the faults explain are a crash loop: say so.
        # A broker restart may fence any worker's static membership (a fatal consumer
        # error) or leave a commit stuck (librdkafka#5511, the watchdog): each worker may
        # exit and be restarted once, by design (``exit_for_restart``).
        explained = 1 if failpoint or scenario in ("counter-zombie", "broker-restart") else 0
        if scenario == "broker-restart" and log_has(victim, STUCK_COMMIT):
            outcome.faults[0].step += "; a commit stuck in librdkafka: the watchdog exited it"
        for w in [*counters, mirror]:
            allowed = explained if w is victim or scenario == "broker-restart" else 0
            if w.restarts > allowed:
                outcome.notes.append(f"{w.log.name} restarted itself {w.restarts} times")
        counted, groups = changelog_state(bootstrap, COUNTER_CHANGELOG.full_name(prefix))
        outcome.lost, outcome.double, outcome.wrong = compare(load.expected, counted)
        outcome.group_lost, outcome.group_double, outcome.group_wrong = compare(
            load.groups, groups)
        if outcome.exact:
            try:
                wait_for(lambda: mirror_totals(settings, load.expected) == load.expected
                         and mirror_groups(settings, load.groups) == load.groups, 120,
                         "the Cassandra mirror to equal the load")
            except AssertionError:
                mirrored = mirror_totals(settings, load.expected)
                outcome.lost, outcome.double, outcome.wrong = compare(load.expected, mirrored)
                outcome.group_lost, outcome.group_double, outcome.group_wrong = compare(
                    load.groups, mirror_groups(settings, load.groups))
                outcome.notes.append("the mirror differs from the changelog")
        if any(n.endswith("not running at the end") or "restarted itself" in n
               for n in outcome.notes):
            for f in outcome.faults:
                f.recovered = False  # a worker that did not stay up did not recover
    finally:
        for w in [*counters, mirror]:
            w.stop()
    outcome.seconds = time.monotonic() - began
    return outcome


def _failpoint(point: str, victim: WorkerProcess, producer: LoadProducer, rng: random.Random,
               plan: str) -> Fault:
    fault = Fault("failpoint", victim.log.stem, step=point)
    if point == "counter.restoring":
        # A restore long enough to be cut: the worker comes back without its local store (a
        # new machine) and replays its partitions' changelog from the start.
        time.sleep(rng.uniform(5.0, 8.0))
        victim.kill()
        shutil.rmtree(Path(victim.env["METERLY_HOME"]) / "state", ignore_errors=True)
        victim.arm(plan)
        victim.start()
    wait_for(lambda: log_has(victim, f"failpoint {point} reached"), 90, f"the failpoint {point}")
    fault.at = time.monotonic()
    fault.alive_before = True  # the worker wrote the line itself, at that step, then died
    fault.flowing = producer.is_alive()
    since = _log_size(victim)
    # The watchdog restarts it (clean: ``arm`` lasts one launch) as ``meterly run`` would.
    fault.recovered = _recovered(victim, since) and victim.restarts >= 1
    return fault


def _kill_and_restart(victim: WorkerProcess, producer: LoadProducer, downtime: float,
                      other: WorkerProcess) -> Fault:
    step = "between or inside batches (random moment)"
    if downtime > 10:
        step += ", down past the session timeout: partitions move to the other worker"
    fault = Fault("SIGKILL", victim.log.stem, step=step)
    fault.alive_before = victim.alive()
    fault.flowing = producer.is_alive()
    other_since = _log_size(other)
    fault.at = victim.kill()  # asserts it was running and died of SIGKILL
    if downtime > 10:
        moved = wait_until_or_false(lambda: log_has(other, "assigned partitions", other_since),
                                    downtime + 10)
        fault.step += "" if moved else " (they did not move)"
    time.sleep(max(0.0, fault.at + downtime - time.monotonic()))
    since = _log_size(victim)
    victim.start()
    fault.recovered = _recovered(victim, since)
    return fault


def _zombie(victim: WorkerProcess, other: WorkerProcess, producer: LoadProducer,
            rng: random.Random) -> Fault:
    """SIGSTOP past the session timeout: the other worker takes the partitions; SIGCONT: the
    resumed one finds itself out of the group or its transaction fenced (KIP-447, step 3)."""
    fault = Fault("SIGSTOP 14 s", victim.log.stem, step="mid-batch, then fenced")
    time.sleep(rng.uniform(2.0, 4.0))
    fault.alive_before = victim.alive()
    other_since = _log_size(other)
    since = _log_size(victim)
    victim.pause()
    fault.at = time.monotonic()
    fault.flowing = producer.is_alive()
    took = wait_until_or_false(lambda: log_has(other, "assigned partitions", other_since), 40)
    time.sleep(max(0.0, fault.at + 14 - time.monotonic()))
    victim.resume()
    evicted = wait_until_or_false(lambda: victim.restarts >= 1 or any(
        log_has(victim, sign, since) for sign in ("transaction aborted", "revoked", "lost",
                                                   "fenced", "FENCED")), 60)
    fault.step = ("paused with a batch in hand; the other worker took its partitions"
                  if took else "paused, but its partitions never moved")
    fault.recovered = took and evicted and wait_until_or_false(
        lambda: victim.alive() and log_has(victim, "assigned partitions", since), 60)
    return fault


def _broker_restart(bootstrap: str, group: str, prefix: str, producer: LoadProducer,
                    counter: WorkerProcess, restart_kafka: Callable[[], None],
                    rng: random.Random) -> Fault:
    fault = Fault("broker restart", "kafka-1", step="counter mid-stream with transactions open")
    topic = USAGE.full_name(prefix)
    wait_for(lambda: committed_offsets(bootstrap, group, topic) > 0, 60,
             "the counter to commit a first transaction")
    time.sleep(rng.uniform(0.5, 3.0))
    before = committed_offsets(bootstrap, group, topic)
    fault.alive_before = counter.alive()
    fault.flowing = producer.is_alive()
    fault.at = time.monotonic()
    restart_kafka()
    since = _log_size(counter)
    # Committed offsets alone can move while the counter is stuck (a commit the broker
    # completed but the client never learnt of): a progress line written after the restart,
    # or the whole load committed, says the counter's own commits complete again.
    fault.recovered = wait_until_or_false(
        lambda: counter.alive() and committed_offsets(bootstrap, group, topic) > before
        and (log_has(counter, '"msg":"committed ', since) or (not producer.is_alive()
             and group_lag(bootstrap, group, topic) == 0)), 150, every=1.0)
    return fault


def wait_until_or_false(probe: Callable[[], Any], timeout: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(every)
    return False
