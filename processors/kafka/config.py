"""What every librdkafka client of Meterly (producers, consumers, admin) is configured with."""

from __future__ import annotations

from typing import Any


def client_config(bootstrap: str) -> dict[str, Any]:
    """The settings a librdkafka client starts from; callers add their own.

    ``metadata.recovery.strategy=none``: librdkafka 2.10+ re-bootstraps when no known broker
    answers (KIP-899), and that decommissions the brokers it knew. After a single broker
    restarted, a decommissioned broker stayed cached as group coordinator, so
    ``send_offsets_to_transaction`` and the consumer's group session hung for minutes
    (confluentinc/librdkafka#5511, open as of librdkafka 2.16; found by the fault report's
    broker-restart scenario). Without re-bootstrap the client keeps reconnecting to the
    brokers it knows, which is what a cluster whose addresses do not change needs.
    """
    return {"bootstrap.servers": bootstrap, "metadata.recovery.strategy": "none"}
