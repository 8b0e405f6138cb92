"""What every librdkafka client of Meterly (producers, consumers, admin) is configured with:
one place for the settings every client needs (connection security is to come here)."""

from __future__ import annotations

from typing import Any


def client_config(bootstrap: str) -> dict[str, Any]:
    """The settings a librdkafka client starts from; callers add their own.

    Re-bootstrap (KIP-899, librdkafka's default ``metadata.recovery.strategy``) stays on.
    After a single broker restarted, it decommissioned the broker and a transactional
    commit then hung on it as a cached coordinator (confluentinc/librdkafka#5511, open as
    of librdkafka 2.16): ``processors.kafka.transactions.Watchdog`` exits such a worker so
    that it restarts. Turning re-bootstrap off ended that hang (0 of 5 runs stuck, against
    5 of 5), but left HTTP batches unanswered, a new key unseen by a gateway and no invoice
    after a frozen broker resumed (the kafka-frozen scenario, 2026-12-06), so it is not.
    """
    return {"bootstrap.servers": bootstrap}
