"""Every Kafka topic Meterly uses, defined once: name, partitions, cleanup, retention, and
what its readers do with a record they cannot read.

Names get the deployment's prefix (``METERLY_TOPIC_PREFIX``) when created, so several
deployments or test runs can share one cluster. A topic name carries its schema version.
The evolution rule: a writer may add fields (keys to a JSON object, columns to the end of
an array), and every reader ignores what it does not know, so adding a field is not a new
version; removing, renaming or changing a field is, and gets a new topic. Example records
of every topic are in ``schemas/examples/<topic>/`` and are checked against the codecs by
``tests/unit/test_contracts.py``.

A record a reader cannot decode never stops the reader: it is sent, unchanged and with the
reason, to the topic's ``dead_letter`` topic, and the reader reads on (one mechanism,
``processors.kafka.invalid``). The ingest topic has a dead-letter topic of its own (its
records can be replayed once fixed); every other topic's go to ``invalid-records.v1``,
which the operator API lists (``GET /v1/admin/invalid-records``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DAY_MS = 24 * 60 * 60 * 1000
#: Where readers send what they cannot decode, unless a topic names its own.
INVALID_RECORDS_NAME = "invalid-records.v1"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    cleanup_policy: Literal["delete", "compact"]
    #: None keeps records forever (compacted topics hold current state).
    retention_ms: int | None
    purpose: str
    #: Where readers send a record they cannot decode (a topic name without the prefix).
    dead_letter: str = INVALID_RECORDS_NAME
    #: The broker stamps each record's time (``LogAppendTime``) instead of the producer.
    broker_time: bool = False

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"

    def config(self, replication: int) -> dict[str, str]:
        config = {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms if self.retention_ms is not None else -1),
            # With three replicas a write survives one broker loss only if two acknowledged it.
            "min.insync.replicas": "2" if replication >= 3 else "1",
        }
        if self.broker_time:
            config["message.timestamp.type"] = "LogAppendTime"
        return config


# Usage records are keyed by tenant, so one tenant's events stay ordered in one partition.
# Kept for 40 days: longer than the 35-day deduplication window, so a counter can be
# rebuilt from the topic for any open period. Only Meterly's principal may write it (the
# local Kafka's ACLs); a record the counter cannot read is dead-lettered in the counting
# transaction, so it is kept (and counted in meterly_invalid_records_total), never lost.
USAGE = TopicSpec(
    "usage.v1", 4, "delete", 40 * DAY_MS,
    "accepted usage events, packed per tenant, written by the gateway and the ingest validator",
)
INGEST_DEAD_LETTER = TopicSpec(
    "ingest.dead-letter.v1", 1, "delete", 30 * DAY_MS,
    "ingest records that failed validation, with the reason in a header",
)
INVALID_RECORDS = TopicSpec(
    INVALID_RECORDS_NAME, 1, "delete", 30 * DAY_MS,
    "records a reader could not decode, unchanged, with the reader and the reason in headers",
)
INGEST = TopicSpec(
    "ingest.cloudevents.v1", 4, "delete", 7 * DAY_MS,
    "CloudEvents (Kafka protocol binding) written by a platform's own services",
    dead_letter=INGEST_DEAD_LETTER.name,
    # Records are judged by when the broker took them, not by a producer's clock.
    broker_time=True,
)
# Co-partitioned with USAGE (same partition count): partition p holds source partition p's
# counters and remembered ids. Compacted: the latest counter value per key is kept. The
# counter's own transactional state; only Meterly's principal writes it.
COUNTER_CHANGELOG = TopicSpec(
    "counter-changelog.v1", USAGE.partitions, "compact", None,
    "the counting worker's state: absolute counters and first-seen ids, transactional",
)
# One unreadable record must not keep every gateway and worker from following the others
# (a record of a newer writer is dead-lettered by an older reader and read once upgraded).
ADMIN = TopicSpec(
    "admin.v1", 1, "compact", None,
    "tenant and API key state, one record per entity, the key cache of every gateway",
)
INVOICES = TopicSpec(
    "invoices.v1", 4, "delete", 400 * DAY_MS,
    "invoice events (invoice.finalized, invoice.voided), keyed by tenant",
)
# Keyed by tenant: one tenant's closes run one after another on one billing worker, which
# is what keeps two invoices of a tenant from spending the same credit.
BILLING_COMMANDS = TopicSpec(
    "billing-commands.v1", 4, "delete", 30 * DAY_MS,
    "requests to close a tenant's period, from the billing timer, the API and the CLI",
)

# Webhooks: events to send (keyed by tenant), then one topic per retry step of the
# published schedule, so every record in a retry topic waits the same time and the topic is
# in due order; the dispatcher pauses a partition until its head is due instead of sleeping.
WEBHOOK_EVENTS = TopicSpec(
    "webhook-events.v1", 4, "delete", 7 * DAY_MS,
    "webhook messages (invoice.finalized, invoice.voided, usage.threshold_reached)",
)
WEBHOOK_RETRIES: tuple[TopicSpec, ...] = tuple(
    TopicSpec(f"webhook-retry-{n}.v1", 2, "delete", 3 * DAY_MS,
              f"webhook deliveries waiting for attempt {n + 1}")
    for n in range(1, 8)
)
WEBHOOK_DEAD_LETTER = TopicSpec(
    "webhook-dead-letter.v1", 1, "delete", 30 * DAY_MS,
    "webhook deliveries whose last attempt failed; replayable through the API",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    USAGE, COUNTER_CHANGELOG, INGEST, INGEST_DEAD_LETTER, INVALID_RECORDS, ADMIN, INVOICES,
    BILLING_COMMANDS, WEBHOOK_EVENTS, *WEBHOOK_RETRIES, WEBHOOK_DEAD_LETTER,
)


def spec_of(full_name: str, prefix: str) -> TopicSpec:
    """The definition of the topic ``full_name`` (with the deployment's ``prefix``)."""
    for spec in ALL_TOPICS:
        if spec.full_name(prefix) == full_name:
            return spec
    raise KeyError(f"{full_name} is not one of Meterly's topics")


# Consumer groups whose committed offsets mean "counted" (each gets the deployment's
# prefix, like the topics). The close barrier (``processors.usage.completeness``) reads them:
# the validator's on the ingest topic, the counter's on usage, the mirror's on the changelog.
INGEST_VALIDATOR_GROUP = "ingest-validator"
COUNTER_GROUP = "counter"
MIRROR_GROUP = "mirror"
