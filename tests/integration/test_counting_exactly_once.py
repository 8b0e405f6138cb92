"""Exactly-once counting under SIGKILL, rebalances and a broker restart.

Each test writes 200,000 usage events (10 % duplicate identities) packed into records,
while counting workers are killed with SIGKILL at random moments and restarted. It then
compares the committed counters in the changelog and in Cassandra with totals computed
independently from the generated load. The steps named refer to the numbered exactly-once
argument in ``processors/usage/counter.py``.
"""

from __future__ import annotations

import random
import secrets
import shutil
import time
from decimal import Decimal
from pathlib import Path

import pytest

from ops.topics import ensure_topics
from processors.runtime.settings import Settings
from processors.usage.counter import GROUP
from processors.usage.mirror_table import UsageTable
from schemas.topics import COUNTER_CHANGELOG, USAGE
from storage.cassandra import connect
from tests.infra import Infra
from tests.usage_load import (
    LoadProducer,
    Totals,
    WorkerProcess,
    changelog_totals,
    group_lag,
    make_load,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 200_000
PRODUCE_SECONDS = 25.0


@pytest.fixture
def isolated(settings: Settings) -> Settings:
    """Fresh topics (and so a fresh consumer group and changelog) for one test."""
    prefix = f"{settings.topic_prefix}x{secrets.token_hex(3)}."
    scoped = settings.model_copy(update={"topic_prefix": prefix})
    assert scoped.kafka_bootstrap
    ensure_topics(scoped.kafka_bootstrap, prefix, 1)
    return scoped


def _mirror_totals(settings: Settings, keys: Totals) -> Totals:
    assert settings.cassandra_hosts
    cluster, session = connect(settings.cassandra_hosts)
    try:
        table = UsageTable(session, settings.cassandra_keyspace)
        found: Totals = {}
        for tenant, period in {(t, p) for t, p, _m in keys}:
            for usage in table.read(tenant, period):
                found[(tenant, period, usage.meter)] = (usage.count, usage.total)
        return found
    finally:
        cluster.shutdown()


def _run(settings: Settings, tmp_path: Path, workers: int, downtimes: list[float],
         infra: Infra | None = None, late_start: float = 0.0,
         produce_seconds: float = PRODUCE_SECONDS, pause: bool = False) -> None:
    """Count a load while the last worker is SIGKILLed once per entry of ``downtimes``
    (with ``pause``: SIGSTOPped for the downtime, then resumed, a zombie).

    A short downtime lets a static member take its partitions straight back; one longer than
    the session timeout (10 s) moves its partitions to the other worker and back again.
    ``late_start`` starts the last worker that many seconds into the load (a worker added).
    """
    assert settings.kafka_bootstrap
    # Tenants unique to this run: the Cassandra keyspace is shared by the session's tests.
    load = make_load(EVENTS, duplicate_share=0.10, seed=random.randrange(1 << 30),
                     tenant_prefix=f"t{secrets.token_hex(3)}-")
    counters = [
        WorkerProcess("counter", worker_env(settings, tmp_path / f"w{i}", str(i)),
                      tmp_path / f"counter-{i}.log")
        for i in range(1, workers + 1)
    ]
    mirror = WorkerProcess("mirror", worker_env(settings, tmp_path / "m", "m"),
                           tmp_path / "mirror.log")
    victim = counters[-1]
    for w in [*counters, mirror]:
        if w is not victim or not late_start:
            w.start()
    producer = LoadProducer(settings.kafka_bootstrap, USAGE.full_name(settings.topic_prefix),
                            load.records, produce_seconds)
    rng = random.Random()
    try:
        producer.start()
        if late_start:
            time.sleep(late_start)
            victim.start()
        # Kills at random moments while records flow (steps 1-5); after every second kill
        # the restarted worker is killed again while it is still restoring (step 6).
        for n, downtime in enumerate(downtimes):
            time.sleep(rng.uniform(1.0, 4.0))
            if pause:
                victim.pause()
                time.sleep(downtime)
                victim.resume()
                continue
            victim.kill()
            time.sleep(downtime)
            victim.start()
            if n % 2 == 1:
                time.sleep(rng.uniform(0.3, 1.5))
                victim.kill()
                victim.start()
        if infra is not None:
            time.sleep(1.0)
            infra.restart("kafka")
        mirror.kill()
        mirror.start()
        producer.join(timeout=600)
        assert producer.error is None, producer.error
        assert not producer.is_alive()

        group = f"{settings.topic_prefix}{GROUP}"
        wait_for(lambda: group_lag(settings.kafka_bootstrap or "", group,
                                   USAGE.full_name(settings.topic_prefix)) == 0,
                 240, "the counters to consume every record")
        for w in counters:
            assert w.alive(), w.log.read_text()[-3000:]
        counted = changelog_totals(settings.kafka_bootstrap,
                                   COUNTER_CHANGELOG.full_name(settings.topic_prefix))
        assert sum(c for c, _ in counted.values()) == load.unique
        assert counted == load.expected

        wait_for(lambda: _mirror_totals(settings, load.expected) == load.expected, 120,
                 "the Cassandra mirror to equal the changelog")
        if pause:
            # The fault landed: the other worker took the paused one's partitions over
            # while it was stopped (after its first assignment, once per pause at least),
            # and the resumed one found itself out of the group or its transaction fenced.
            takeovers = counters[0].log.read_text().count("assigned partitions")
            assert takeovers >= 1 + len(downtimes), counters[0].log.read_text()[-3000:]
            evicted = victim.log.read_text()
            assert victim.restarts or any(sign in evicted for sign in (
                "transaction aborted", "revoked", "lost", "fenced", "FENCED")), evicted[-3000:]
        else:
            assert victim.kills >= len(downtimes)
    finally:
        for w in [*counters, mirror]:
            w.stop()


def test_one_worker_killed_repeatedly_counts_exactly(isolated: Settings, tmp_path: Path) -> None:
    _run(isolated, tmp_path, workers=1, downtimes=[0.5, 1.0, 0.2, 3.0])


def test_two_workers_one_killed_repeatedly_count_exactly(
    isolated: Settings, tmp_path: Path
) -> None:
    # The second worker joins mid-stream, then is killed four times; the long downtimes
    # move its partitions to the first worker and back (step 6 under a rebalance; KIP-447
    # fencing of a worker that lost a partition, step 3).
    _run(isolated, tmp_path, workers=2, downtimes=[12.0, 0.5, 12.0, 0.5], late_start=4.0,
         produce_seconds=50.0)


@pytest.mark.parametrize("round_", [1, 2])
def test_a_paused_worker_resumed_after_its_partitions_moved_counts_nothing_twice(
    isolated: Settings, tmp_path: Path, round_: int
) -> None:
    """A zombie: the second worker is SIGSTOPped past the session timeout (10 s), so its
    partitions move to the first, then resumed with its transaction and its batch in hand.
    KIP-447 fencing (step 3) and the abort-and-rewind of ``commit_or_rewind`` must keep its
    late commit from counting anything twice."""
    _run(isolated, tmp_path, workers=2, downtimes=[14.0, 14.0], pause=True,
         produce_seconds=45.0)


def test_broker_restart_during_a_run_counts_exactly(
    isolated: Settings, tmp_path: Path, infra: Infra
) -> None:
    if infra.kind == "external":
        pytest.skip("the suite does not restart external clusters")
    _run(isolated, tmp_path, workers=1, downtimes=[1.0], infra=infra)


def test_totals_hold_exact_decimals() -> None:
    load = make_load(1000, 0.1, seed=3)
    assert all(isinstance(total, Decimal) for _c, total in load.expected.values())
    assert sum(c for c, _ in load.expected.values()) == load.unique < load.sent


FAILPOINTS = ("counter.before-commit", "counter.after-commit", "counter.restoring",
              "mirror.after-write")


@pytest.mark.parametrize("point", FAILPOINTS)
@pytest.mark.parametrize("round_", [1, 2])
def test_a_kill_at_each_named_step_counts_exactly(isolated: Settings, tmp_path: Path,
                                                  point: str, round_: int) -> None:
    """Each failpoint (processors/runtime/failpoints.py) SIGKILLs the worker at one step of
    its protocol: between writing the transaction and committing it (counter step 3/4),
    between the commit and the local store (4/5), in the middle of a restore (6), and
    between the mirror's Cassandra write and its offset commit. The test shows the fault
    landed there, mid-stream (the worker's own line, the load still flowing, the worker
    restarted after), and that the totals are exact. The seed is printed for a replay."""
    assert isolated.kafka_bootstrap
    seed = random.randrange(1 << 30)
    print(f"seed {seed} point {point}")
    rng = random.Random(seed)
    load = make_load(EVENTS, duplicate_share=0.10, seed=seed,
                     tenant_prefix=f"t{secrets.token_hex(3)}-")
    counter = WorkerProcess("counter", worker_env(isolated, tmp_path / "w", "1"),
                            tmp_path / "counter.log")
    mirror = WorkerProcess("mirror", worker_env(isolated, tmp_path / "m", "m"),
                           tmp_path / "mirror.log")
    victim = mirror if point.startswith("mirror") else counter
    # The n-th arrival: some batches into the stream (a restore reaches its point once).
    nth = 1 if point == "counter.restoring" else rng.randint(3, 12)
    armed = {**victim.env, "METERLY_FAILPOINTS": f"{point}@{nth}"}
    plain = dict(victim.env)
    if point != "counter.restoring":
        victim.env = armed
    counter.start()
    mirror.start()
    producer = LoadProducer(isolated.kafka_bootstrap, USAGE.full_name(isolated.topic_prefix),
                            load.records, PRODUCE_SECONDS)
    try:
        producer.start()
        if point == "counter.restoring":
            # A restore long enough to be cut: the worker comes back without its local
            # store (a new machine) and replays its partitions' changelog from the start.
            time.sleep(rng.uniform(6.0, 10.0))
            counter.kill()
            shutil.rmtree(tmp_path / "w" / "state", ignore_errors=True)
            victim.env = armed
            counter.start()
        wait_for(lambda: f"failpoint {point} reached" in victim.log.read_text(), 90,
                 f"the failpoint {point}")
        flowing = producer.is_alive()
        victim.env = plain  # the restart runs clean
        wait_for(lambda: victim.restarts >= 1 and victim.alive(), 30, "the restart")
        assert flowing, "the fault landed after the load had stopped"
        producer.join(timeout=600)
        assert producer.error is None, producer.error
        group = f"{isolated.topic_prefix}{GROUP}"
        wait_for(lambda: group_lag(isolated.kafka_bootstrap or "", group,
                                   USAGE.full_name(isolated.topic_prefix)) == 0,
                 240, "the counter to consume every record")
        counted = changelog_totals(isolated.kafka_bootstrap,
                                   COUNTER_CHANGELOG.full_name(isolated.topic_prefix))
        assert counted == load.expected
        wait_for(lambda: _mirror_totals(isolated, load.expected) == load.expected, 120,
                 "the Cassandra mirror to equal the changelog")
        assert victim.log.read_text().count(f"failpoint {point} reached") >= 1
    finally:
        counter.stop()
        mirror.stop()
