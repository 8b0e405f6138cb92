"""CloudEvents 1.0 (structured JSON) usage events: validation into ``UsageEvent``.

A usage event is a CloudEvent whose ``type`` names the meter. ``data.quantity`` (default 1)
is read from the JSON text as an exact decimal, never through a float. Every check returns
a reason a person can act on.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from schemas.usage_v1 import UsageEvent

METER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_ID = 256
MAX_SOURCE = 1024
MAX_SUBJECT = 1024
#: 10^15 with nine decimals: room for bytes, tokens and milliseconds, and exact in Cassandra.
MAX_QUANTITY = Decimal(10) ** 15
MAX_DECIMALS = 9


class EventRejected(ValueError):  # noqa: N818 - a verdict on input, not a program error
    """The event cannot be accepted; ``str(exc)`` says why."""


def parse_time(value: Any, received: datetime) -> datetime:
    if value is None:
        return received
    if not isinstance(value, str):
        raise EventRejected("time must be an RFC 3339 string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise EventRejected(f"time {value!r} is not RFC 3339") from None
    if moment.tzinfo is None:
        raise EventRejected("time must carry a UTC offset (for example 2026-11-26T10:00:00Z)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-10:00 is past the last instant a datetime can hold in UTC.
        raise EventRejected(f"time {value!r} is out of range") from None


def parse_quantity(data: Any) -> Decimal:
    if data is None:
        return Decimal(1)
    if not isinstance(data, dict):
        raise EventRejected("data must be a JSON object")
    return parse_amount(data.get("quantity", 1), "data.quantity")


def parse_amount(raw: Any, name: str) -> Decimal:
    """``raw`` (a JSON number or decimal string) as an exact decimal in an event's bounds:
    finite, >= 0, below 10^15, at most 9 decimal places; ``name`` says which in a refusal."""
    if isinstance(raw, float):
        # From a fast JSON parser: repr gives the shortest decimal that reads back as this
        # float, which is the literal the client sent when it had <= 15 significant digits
        # (callers re-parse longer literals exactly).
        raw = repr(raw)
    elif isinstance(raw, bool) or not isinstance(raw, int | Decimal | str):
        raise EventRejected(f"{name} must be a number or a decimal string")
    try:
        quantity = Decimal(raw)
    except InvalidOperation:
        raise EventRejected(f"{name} {raw!r} is not a decimal number") from None
    if not quantity.is_finite() or quantity < 0:
        raise EventRejected(f"{name} must be a finite number >= 0")
    if quantity >= MAX_QUANTITY:
        raise EventRejected(f"{name} must be below 10^15")
    exponent = quantity.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMALS:
        raise EventRejected(f"{name} has more than {MAX_DECIMALS} decimal places")
    return quantity.normalize() if quantity == quantity.to_integral() else quantity


#: A sequence number: the CloudEvents ``sequence`` extension as an unsigned decimal integer
#: (leading zeros allowed, so zero-padded strings, which order as text, mean the same).
MAX_SEQUENCE_DIGITS = 18


def parse_sequence(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EventRejected("sequence must be a decimal integer (string or number)")
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > MAX_SEQUENCE_DIGITS:
        raise EventRejected(f"sequence must be an unsigned decimal integer of at most "
                            f"{MAX_SEQUENCE_DIGITS} digits")
    return int(text)


def _text(event: dict[str, Any], name: str, limit: int, required: bool = True) -> str | None:
    value = event.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise EventRejected(f"{name} is required and must be a non-empty string")
    if len(value) > limit:
        raise EventRejected(f"{name} is longer than {limit} characters")
    return value


def to_usage_event(event: Any, received: datetime, require_time: bool = False) -> UsageEvent:
    """Validate one structured-mode CloudEvent (already parsed JSON).

    Without ``time`` the event is stamped ``received``. Its identity is then remembered for
    35 days from that receipt and no longer: a resend more than 35 days later carries a new
    receipt time in an open period and counts again (with ``time``, the resend is refused
    because its period is closed). ``require_time`` (``METERLY_REQUIRE_EVENT_TIME``) refuses
    events without ``time`` for deployments whose producers may resend that late.
    """
    if not isinstance(event, dict):
        raise EventRejected("each event must be a JSON object")
    if event.get("specversion") != "1.0":
        raise EventRejected("specversion must be \"1.0\"")
    event_id = _text(event, "id", MAX_ID) or ""
    source = _text(event, "source", MAX_SOURCE) or ""
    meter = _text(event, "type", 128) or ""
    if not METER_PATTERN.match(meter):
        raise EventRejected("type (the meter) may hold letters, digits, '.', '_', ':' and '-'")
    subject = _text(event, "subject", MAX_SUBJECT, required=False)
    content_type = event.get("datacontenttype")
    if content_type is not None and content_type != "application/json":
        raise EventRejected("datacontenttype must be application/json when given")
    if require_time and event.get("time") is None:
        raise EventRejected("time is required (METERLY_REQUIRE_EVENT_TIME): an event without "
                            "it could be counted again if resent more than 35 days later")
    moment = parse_time(event.get("time"), received)
    quantity = parse_quantity(event.get("data"))
    sequence = parse_sequence(event.get("sequence"))
    return UsageEvent(event_id, source, meter, int(moment.timestamp() * 1000), quantity, subject,
                      sequence)
