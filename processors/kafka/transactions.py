"""Committing a consume-transform-produce transaction, shared by the transactional workers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, NoReturn

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from prometheus_client import Histogram

from processors.kafka.retry import with_retries

log = logging.getLogger(__name__)


TRANSACTION_TIMEOUT_MS = 15_000


def idempotent_producer(bootstrap: str) -> Producer:
    """The producer of a worker whose outputs are idempotent by id (close commands, invoice
    and webhook messages): retries never duplicate a record, acks=all never loses one."""
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                     "acks": "all", "linger.ms": 5, "compression.type": "lz4"})


def transactional_producer(bootstrap: str, transactional_id: str, **extra: Any) -> Producer:
    """The producer of a consume-transform-produce worker.

    ``transactional_id`` must be stable per worker: a restarted worker fences its dead
    predecessor and aborts that predecessor's open transaction at once, instead of after
    the transaction timeout.
    """
    return Producer({
        "bootstrap.servers": bootstrap,
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


def commit_or_rewind(producer: Producer, consumer: Consumer) -> bool:
    """Add the consumer's positions to the open transaction and commit it.

    Returns False when the transaction had to be aborted (the group moved on: this worker
    lost a partition in a rebalance and KIP-447 fenced its offsets). Nothing of the batch
    took effect then, and the consumer is rewound to the committed offsets so the batch is
    read again. Any other error is raised: the process exits and its supervisor restarts it.
    """
    positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
    try:
        with COMMIT_SECONDS.time():
            producer.flush(60)
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(),
                                                 30)
            with_retries(lambda: producer.commit_transaction(60), "transaction commit")
        return True
    except KafkaException as exc:
        err = exc.args[0]
        if not err.txn_requires_abort():
            raise
        log.warning("transaction aborted: %s; re-reading from the committed offsets", err.str())
        producer.abort_transaction(60)
        for tp in consumer.committed(consumer.assignment(), timeout=30):
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        return False
