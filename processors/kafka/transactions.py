"""Committing a consume-transform-produce transaction, shared by the transactional workers."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from prometheus_client import Histogram

from processors.kafka.config import client_config
from processors.kafka.retry import with_retries

log = logging.getLogger(__name__)


TRANSACTION_TIMEOUT_MS = 15_000
#: The whole of one commit, retries through a broker restart included, must finish within
#: this, well inside every transactional worker's ``max.poll.interval.ms`` (120 s or more).
COMMIT_DEADLINE_SECONDS = 60.0


def idempotent_producer(bootstrap: str) -> Producer:
    """The producer of a worker whose outputs are idempotent by id (close commands, invoice
    and webhook messages): retries never duplicate a record, acks=all never loses one."""
    return Producer({**client_config(bootstrap), "enable.idempotence": True,
                     "acks": "all", "linger.ms": 5, "compression.type": "lz4"})


def transactional_producer(bootstrap: str, transactional_id: str, **extra: Any) -> Producer:
    """The producer of a consume-transform-produce worker.

    ``transactional_id`` must be stable per worker: a restarted worker fences its dead
    predecessor and aborts that predecessor's open transaction at once, instead of after
    the transaction timeout.
    """
    return Producer({
        **client_config(bootstrap),
        "transactional.id": transactional_id,
        "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "compression.type": "lz4",
        **extra,
    })


COMMIT_SECONDS = Histogram(
    "meterly_transaction_commit_seconds",
    "flushing a batch's records and committing its Kafka transaction (offsets included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def exit_now() -> NoReturn:
    """Log the error being handled and exit with status 1, without cleanup.

    Faust logs a crashed agent and keeps the worker running without it; a worker that has
    silently stopped processing is worse than one that restarts.
    """
    log.exception("worker failed; exiting so that it is restarted")
    logging.shutdown()
    os._exit(1)


def exit_for_restart(run: Callable[[], None]) -> None:
    """Run a transactional worker; on any error, log it and exit at once with status 1.

    The supervisor restarts the process, and the restarted worker fences this one and
    rebuilds from Kafka. Exiting without closing is deliberate: a consumer in a fatal state
    (for example a static member fenced after a broker restart) can block in ``close()``.
    """
    try:
        run()
    except Exception:  # noqa: BLE001 - any failure means exit and restart
        exit_now()


class Watchdog:
    """Exits the process when a guarded call outlives its deadline.

    librdkafka does not always honour the timeouts of its transactional calls: after a
    single broker restarted while a transaction was being committed, ``commit_transaction(60)``
    was seen blocking for over 120 s without returning or raising, until the consumer left
    its group on ``max.poll.interval.ms`` and nothing was counted any more (the fault report's
    broker-restart scenario; the library computes an unbounded deadline for that call, as
    MaterializeInc/materialize#30508 found). Whether such a commit took effect is unknown
    to the worker, and need not be known: the restarted worker fences this one (same
    ``transactional.id``), and reads on from the committed offsets, which moved with the
    transaction if and only if it committed.
    """

    def __init__(self, check_every: float = 0.5) -> None:
        self._check_every = check_every
        self._until: float | None = None
        self._what = ""
        self._seconds = 0.0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @contextmanager
    def guard(self, what: str, seconds: float) -> Iterator[None]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="watchdog",
                                                daemon=True)
                self._thread.start()
        self._what, self._seconds = what, seconds
        self._until = time.monotonic() + seconds
        try:
            yield
        finally:
            self._until = None

    def _watch(self) -> NoReturn:
        while True:
            time.sleep(self._check_every)
            until = self._until
            if until is not None and time.monotonic() > until:
                log.error("%s not done after %gs; exiting so that the worker is restarted "
                          "(its successor fences this process and reads on from the "
                          "committed offsets)", self._what, self._seconds)
                logging.shutdown()
                os._exit(1)


WATCHDOG = Watchdog()


def commit_or_rewind(producer: Producer, consumer: Consumer) -> bool:
    """Add the consumer's positions to the open transaction and commit it.

    Returns False when the transaction had to be aborted (the group moved on: this worker
    lost a partition in a rebalance and KIP-447 fenced its offsets). Nothing of the batch
    took effect then, and the consumer is rewound to the committed offsets so the batch is
    read again. Any other error is raised: the process exits and its supervisor restarts it;
    so does a commit that takes longer than ``COMMIT_DEADLINE_SECONDS`` (``Watchdog``).
    """
    with WATCHDOG.guard("transaction commit", COMMIT_DEADLINE_SECONDS):
        return _commit_or_rewind(producer, consumer)


def _commit_or_rewind(producer: Producer, consumer: Consumer) -> bool:
    positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
    try:
        with COMMIT_SECONDS.time():
            producer.flush(20)
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(),
                                                 20)
            with_retries(lambda: producer.commit_transaction(20), "transaction commit",
                         timeout=COMMIT_DEADLINE_SECONDS)
        return True
    except KafkaException as exc:
        err = exc.args[0]
        if not err.txn_requires_abort():
            raise
        log.warning("transaction aborted: %s; re-reading from the committed offsets", err.str())
        producer.abort_transaction(20)
        for tp in consumer.committed(consumer.assignment(), timeout=20):
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        return False
