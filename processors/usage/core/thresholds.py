"""Usage thresholds as pure code: which shares of a plan's included quantity a counter has
reached, and the one message id each (tenant, period, meter, percent) notice has."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from decimal import Decimal


def parse_thresholds(text: str) -> tuple[int, ...]:
    values = sorted({int(p) for p in text.split(",") if p.strip()})
    if any(not 0 < p <= 1000 for p in values):
        raise ValueError("usage thresholds are percentages between 1 and 1000")
    return tuple(values)


def crossed(quantity: Decimal, included: Decimal, thresholds: Sequence[int]) -> list[int]:
    """The thresholds (percent of ``included``) that ``quantity`` has reached."""
    if included <= 0:
        return []
    return [p for p in thresholds if quantity * 100 >= included * p]


def message_id(tenant_id: str, period: str, meter: str, percent: int) -> str:
    digest = hashlib.blake2b(f"{tenant_id}\x00{period}\x00{meter}\x00{percent}".encode(),
                             digest_size=12).hexdigest()
    return f"msg_thr_{digest}"
