"""usage.threshold_reached: a tenant passed a share of its plan's included quantity.

The mirror worker sees every counter's new value; ``crossed`` (``processors.usage.core.
thresholds``) says which thresholds a value has reached, and ``ThresholdNotices`` sends each
(tenant, period, meter, percent) once: a Cassandra row claims it (``ThresholdLedger``), the
message goes to Kafka, then the row is marked sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from confluent_kafka import Producer

from processors.tenants.core.directory import Directory
from processors.tenants.core.subscriptions import assignment_at
from processors.usage.core.periods import period_bounds
from processors.usage.core.thresholds import crossed, message_id
from processors.usage.threshold_ledger import ThresholdLedger
from schemas import webhooks_v1
from schemas.counter_changelog_v1 import CounterKey
from schemas.plans_v1 import PlanSpec
from schemas.rfc3339 import time_text


class ThresholdNotices:
    def __init__(self, directory: Directory, ledger: ThresholdLedger, producer: Producer,
                 topic: str, thresholds: Sequence[int]) -> None:
        self.directory = directory
        self.ledger = ledger
        self.producer = producer
        self.topic = topic
        self.thresholds = thresholds
        self._done: set[tuple[str, str, str, int]] = set()
        self._included: dict[tuple[str, int], Mapping[str, Decimal]] = {}

    def _included_of(self, tenant_id: str, period: str) -> tuple[str, Mapping[str, Decimal]]:
        start, end = period_bounds(period)
        at = min(datetime.now(UTC), end - timedelta(microseconds=1))
        assignment = assignment_at(self.directory.subscription(tenant_id), max(at, start))
        if assignment is None:
            return "", {}
        key = (assignment.plan, assignment.version)
        if key not in self._included:
            record = self.directory.plan(*key)
            spec = PlanSpec.model_validate(record.spec) if record else None
            self._included[key] = {m: p.included for m, p in spec.prices.items()} if spec else {}
        return f"{assignment.plan} v{assignment.version}", self._included[key]

    def check(self, values: Mapping[CounterKey, tuple[int, Decimal, int]]) -> int:
        """Send the notices ``values`` (new counter values) call for; return how many."""
        sent: list[tuple[str, str, str, int]] = []
        for (tenant_id, period, meter), (_count, total, _version) in values.items():
            plan, included = self._included_of(tenant_id, period)
            amount = included.get(meter, Decimal(0))
            for percent in crossed(total, amount, self.thresholds):
                key = (tenant_id, period, meter, percent)
                if key in self._done:
                    continue
                self._done.add(key)
                if not self.ledger.notice_due(*key):
                    continue
                message = webhooks_v1.Message(
                    message_id(*key), webhooks_v1.USAGE_THRESHOLD, tenant_id,
                    time_text(datetime.now(UTC), "seconds"),
                    {"tenant_id": tenant_id, "period": period, "meter": meter,
                     "percent": percent, "included": str(amount), "quantity": str(total),
                     "plan": plan})
                self.producer.produce(self.topic, webhooks_v1.encode_message(message),
                                      key=tenant_id.encode())
                sent.append(key)
        if sent:
            if self.producer.flush(30):
                raise RuntimeError("threshold notices not acknowledged by Kafka")
            self.ledger.notice_sent(sent)
        return len(sent)
