"""Two billing worker processes closing the same tenants while one is SIGKILLed, and the
evidence of what the kill hit: shared by the one-node numbering test
(``tests/integration/test_invoice_numbers.py``) and the three-node cluster test
(``tests/integration/test_cluster_mode.py``)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cassandra.cluster import Session
from confluent_kafka import ConsumerGroupState, KafkaError, Message
from confluent_kafka.admin import AdminClient

from processors.billing.core.invoice import invoice_id
from processors.billing.invoice_store import InvoiceStore
from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_bounds, period_of
from schemas import billing_commands_v1
from schemas.topics import ADMIN, BILLING_COMMANDS
from tests.kafka_helpers import subscribe_on_admin_topic
from tests.stack import wait_until
from tests.usage_load import WorkerProcess, worker_env


def sequence_numbers(store: InvoiceStore, refs: list[tuple[str, str]], prefix: str,
                     year: int) -> list[int]:
    """The sequence numbers of ``refs``' invoices (all numbered, all in ``prefix``-``year``),
    sorted."""
    numbers = store.numbers_of(refs)
    assert all(n is not None for n in numbers), "some invoices were never numbered"
    assert all(n.startswith(f"{prefix}-{year}-") for n in numbers if n), numbers[:5]
    return sorted(int(n.rsplit("-", 1)[1]) for n in numbers if n)


def _group(bootstrap: str, group: str, topic: str) -> dict[str, set[int]] | None:
    """The members of consumer group ``group`` and the ``topic`` partitions each holds, or
    None while the group is not stable (still balancing, or not formed)."""
    admin = AdminClient(client_config(bootstrap))
    try:
        described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(15)
    except Exception:  # noqa: BLE001 - a coordinator moving or loading: ask again
        return None
    if described.state != ConsumerGroupState.STABLE:
        return None
    return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions
                          if tp.topic == topic} for m in described.members}


def _closed(log: Path, upto: int | None = None, since: int = 0) -> int:
    """Invoices a billing worker's log says it closed, in the bytes ``since:upto`` (the log
    is appended to across restarts: the offsets name what was written when)."""
    text = log.read_bytes()[since:upto].decode(errors="replace")
    return sum(json.loads(line)["invoices"] for line in text.splitlines()
               if '"periods closed"' in line)


@dataclass
class KillEvidence:
    """What the kill in ``close_concurrently_with_a_kill`` hit."""

    #: Invoices each worker's log showed closed before the kill landed.
    closed_before_kill: tuple[int, int]
    #: The victim's partitions of the command topic when it was killed.
    victim_partitions: set[int]
    #: Commands acknowledged by Kafka on the victim's partitions before the kill whose
    #: invoices had no number right after it: work the dead worker left behind.
    left_behind: list[str]
    #: The claimed batch (invoice_sequences.pending) right after the kill, and how many of
    #: its invoices had no number yet (> 0: the kill fell between claim and numbering).
    pending_after_kill: int
    pending_unnumbered_after_kill: int
    survivor_took_over: bool = False
    restarted_rejoined: bool = False
    restarts: tuple[int, int] = field(default=(0, 0))


def close_concurrently_with_a_kill(scoped: Settings, session: Session, tmp_path: Path,
                                   tenants: list[str], invoice_prefix: str,
                                   timeout: float = 240) -> KillEvidence:
    """Two ``meterly worker billing`` processes on ``scoped``'s (already created) topics
    close ``tenants``' current period from the command topic; one is SIGKILLed while
    commands stream in, after both have numbered invoices. Returns what the kill hit, once
    every invoice is numbered and 1..N was checked."""
    bootstrap = scoped.kafka_bootstrap
    assert bootstrap
    period = period_of(datetime.now(UTC))
    start, _end = period_bounds(period)
    admin_producer = subscribe_on_admin_topic(bootstrap, ADMIN.full_name(scoped.topic_prefix),
                                              tenants, start)
    commands = BILLING_COMMANDS.full_name(scoped.topic_prefix)
    group = f"{scoped.topic_prefix}billing"
    store = InvoiceStore(session, scoped.cassandra_keyspace)
    refs = {t: (t, invoice_id(t, period)) for t in tenants}
    # tenant -> (partition, monotonic time its command was known acknowledged)
    acked: dict[str, tuple[int, float]] = {}

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        key = msg.key()
        assert key is not None
        acked[key.decode()] = (int(msg.partition() or 0), time.monotonic())

    def send(batch: list[str], pause: float = 0.0) -> None:
        for index, tenant in enumerate(batch):
            admin_producer.produce(commands, billing_commands_v1.encode(
                billing_commands_v1.CloseCommand(tenant, period, "operator")),
                key=tenant.encode(), on_delivery=on_delivery)
            if index % 20 == 19:
                admin_producer.flush(10)
                time.sleep(pause)
        assert admin_producer.flush(30) == 0

    def unnumbered(batch: list[str]) -> list[str]:
        numbers = store.numbers_of([refs[t] for t in batch])
        return [t for t, n in zip(batch, numbers, strict=True) if n is None]

    workers = []
    for i in (1, 2):
        env = {**worker_env(scoped, tmp_path / f"home{i}", str(i)),
               "METERLY_INVOICE_PREFIX": invoice_prefix, "METERLY_ADMIN_TOKEN": "x" * 32}
        worker = WorkerProcess("billing", env, tmp_path / f"billing-{i}.log")
        worker.start()
        workers.append(worker)
    survivor, victim = workers
    try:
        # Both have joined: the group is stable with two members sharing every partition.
        joined = wait_until("both billing workers assigned command partitions", lambda: (
            g := _group(bootstrap, group, commands)) and len(g) == 2 and all(g.values())
            and set().union(*g.values()) == set(range(BILLING_COMMANDS.partitions)) and g,
            timeout=120, every=0.5)

        # Closes go out 20 at a time until both workers have numbered some.
        sent = 0
        while not all(_closed(w.log) for w in workers):
            assert sent < len(tenants) // 3, "a billing worker never closed a period"
            chunk = tenants[sent:sent + 20]
            send(chunk)
            sent += len(chunk)
            wait_until("the chunk numbered", lambda: not unnumbered(chunk),  # noqa: B023
                       timeout=60)
        marks = [w.log.stat().st_size for w in workers]

        # The rest streams in; the kill lands once the victim closed part of the stream.
        rest = tenants[sent:]
        sender = threading.Thread(target=send, args=(rest, 0.25), daemon=True)
        sender.start()
        wait_until("the victim closing the streamed commands",
                   lambda: _closed(victim.log, since=marks[1]) > 0, timeout=60, every=0.05)
        before = _group(bootstrap, group, commands) or joined
        sizes = [w.log.stat().st_size for w in workers]
        landed = victim.kill()  # asserts it was alive and died of the SIGKILL
        row = session.execute(
            f"SELECT pending FROM {scoped.cassandra_keyspace}.invoice_sequences "
            "WHERE issuer = %s AND year = %s", (invoice_prefix, datetime.now(UTC).year)).one()
        pending = [tuple(p.split("\x1f", 1)) for p in (row.pending or ())] if row else []
        pending_unnumbered = sum(n is None for n in store.numbers_of(
            [(t, i) for t, i in pending]))
        acked_before = [t for t, (_p, at) in acked.items() if at < landed]
        missing_at_kill = set(unnumbered(acked_before))
        closed_before = (_closed(survivor.log, sizes[0]), _closed(victim.log, sizes[1]))

        # The dead member leaves the group (session timeout); the survivor takes all.
        after = wait_until("the survivor alone with every partition", lambda: (
            g := _group(bootstrap, group, commands)) and len(g) == 1 and g, timeout=60)
        (survivor_id,) = after
        assert after[survivor_id] == set(range(BILLING_COMMANDS.partitions)), after
        victim_ids = [m for m in before if m != survivor_id]
        assert len(victim_ids) == 1, (before, after)
        victim_partitions = before[victim_ids[0]]
        left_behind = sorted(t for t in missing_at_kill
                             if acked[t][0] in victim_partitions)
        victim.start()
        sender.join(120)
        assert not sender.is_alive(), "the commands were never all sent"
        rejoined = wait_until("the restarted worker back in the group", lambda: (
            g := _group(bootstrap, group, commands)) and len(g) == 2 and all(g.values()),
            timeout=120, every=0.5)

        all_refs = [refs[t] for t in tenants]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(n is not None for n in store.numbers_of(all_refs)):
                break
            time.sleep(1)
        logs = "\n".join(w.log.read_text()[-2000:] for w in workers)
        # Numbered by the workers' clock, in the year of now (a close straddling New Year
        # would number in two sequences, and fail here).
        assert sequence_numbers(store, all_refs, invoice_prefix, datetime.now(UTC).year
                                ) == list(range(1, len(tenants) + 1)), logs
        return KillEvidence(closed_before, victim_partitions, left_behind, len(pending),
                            pending_unnumbered, True, bool(rejoined),
                            (survivor.restarts, victim.restarts))
    finally:
        for worker in workers:
            worker.stop()


def check_kill_evidence(evidence: KillEvidence) -> None:
    """What shows the kill hit a worker in the middle of the work, and that the others
    finished what it left (the numbering itself is checked by the caller)."""
    print(f"kill evidence: {evidence}")
    # Both workers had numbered invoices before the kill landed (log bytes written before
    # it): the claims were made concurrently and the victim was numbering.
    assert all(evidence.closed_before_kill), evidence
    # The dead worker left commands behind on its partitions (acknowledged by Kafka before
    # the kill, unnumbered right after it); the survivor or the restart numbered them.
    assert evidence.left_behind, evidence
    assert evidence.survivor_took_over, evidence
    assert evidence.restarted_rejoined, evidence
    # Neither worker exited by itself (a crash loop would hide behind the watchdog).
    assert evidence.restarts == (0, 0), evidence
