"""Every topic's example records (``schemas/examples/<topic>/*.json``) against its codec.

For each example: it decodes; encoding what was decoded gives the example's bytes back (so
the examples are exactly what Meterly's writers write); and it still decodes to the same
thing with an unknown field added, which is the evolution rule of ``schemas/topics.py``
(readers ignore added fields; a breaking change is a new topic version).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.billing import invoice_codec
from schemas import admin_v1, billing_commands_v1, usage_v1, webhooks_v1
from schemas import counter_changelog_v1 as changelog
from schemas.cloudevents import to_usage_event
from schemas.cloudevents_kafka import record_to_event
from schemas.topics import ALL_TOPICS, WEBHOOK_RETRIES

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
RETRY_FAMILY = "webhook-retry-N.v1"
UNKNOWN = "x_added_later"


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    #: The value as JSON, when it is JSON.
    doc: Any


def load(path: Path) -> Record:
    raw = json.loads(path.read_text())
    key = raw["key"].encode() if "key" in raw else (
        base64.b64decode(raw["key_base64"]) if "key_base64" in raw else None)
    if "value" in raw:
        return Record(key, orjson.dumps(raw["value"]), raw.get("headers", {}), raw["value"])
    return Record(key, base64.b64decode(raw["value_base64"]), raw.get("headers", {}), None)


def _ingest(record: Record) -> Any:
    event = record_to_event(record.value, list(record.headers.items()))
    return to_usage_event(event, datetime(2026, 12, 1, 10, 0, tzinfo=UTC))


def _changelog(record: Record) -> Any:
    assert record.key is not None
    assert record.value is not None
    if record.key[:1] == changelog.COUNTER:
        return changelog.parse_counter(record.key, record.value)
    if record.key[:1] == changelog.SEQUENCE:
        return changelog.parse_sequence(record.key, record.value)
    if record.key[:1] == changelog.GROUP:
        return changelog.parse_group(record.key, record.value)
    assert record.key[:1] == changelog.SEEN
    return list(changelog.parse_seen(record.value))


def _changelog_encode(record: Record, decoded: Any) -> bytes:
    assert record.key is not None
    if record.key[:1] == changelog.COUNTER:
        key, count, total = decoded
        assert changelog.counter_key(key) == record.key
        return changelog.counter_value(count, total)
    if record.key[:1] == changelog.SEQUENCE:
        skey, state = decoded
        assert changelog.sequence_key(skey) == record.key
        return changelog.sequence_value(state)
    if record.key[:1] == changelog.GROUP:
        gkey, gvalue = decoded
        assert changelog.group_key(gkey) == record.key
        return changelog.group_value(gvalue)
    return changelog.seen_value(decoded)


@dataclass(frozen=True)
class Codec:
    decode: Callable[[Record], Any]
    #: Encodes what ``decode`` gave back into the record's value; None: Meterly never
    #: writes records of this topic itself (platform services do).
    encode: Callable[[Record, Any], bytes] | None
    #: Where an unknown field can be added, besides the top level of a JSON value.
    nested: Callable[[Any], None] = lambda _doc: None


def _value(f: Callable[[bytes], Any]) -> Callable[[Record], Any]:
    def decode(record: Record) -> Any:
        assert record.value is not None
        return f(record.value)

    return decode


def _add_to_events(doc: Any) -> None:
    for event in doc["events"]:
        # After every column this reader knows (the last: contributions, the eighth).
        event.extend([None] * (8 - len(event)))
        event.append("a column added later")
        for contribution in event[7] or ():
            contribution.append("a field added later")


def _add_to_invoice(doc: Any) -> None:
    doc["invoice"][UNKNOWN] = {"any": "thing"}
    for line in doc["invoice"]["lines"]:
        line[UNKNOWN] = 1


def _add_to_message(doc: Any) -> None:
    doc["message"][UNKNOWN] = 1


def _add_to_admin(doc: Any) -> None:
    for nested in (*doc.get("assignments", ()), *doc.get("secrets", ())):
        nested[UNKNOWN] = 1


DELIVERY = Codec(_value(webhooks_v1.decode_delivery),
                 lambda _r, d: webhooks_v1.encode_delivery(d), _add_to_message)
CODECS: dict[str, Codec] = {
    "usage.v1": Codec(_value(usage_v1.decode), lambda _r, d: usage_v1.encode(d),
                      _add_to_events),
    "counter-changelog.v1": Codec(_changelog, _changelog_encode),
    "ingest.cloudevents.v1": Codec(_ingest, None),
    "ingest.dead-letter.v1": Codec(_ingest, None),
    # Any bytes at all: what a reader could not decode, kept as it was.
    "invalid-records.v1": Codec(lambda record: record.value, None),
    "admin.v1": Codec(_value(admin_v1.decode), lambda _r, d: admin_v1.encode(d),
                      _add_to_admin),
    "invoices.v1": Codec(_value(invoice_codec.decode_event),
                         lambda _r, d: invoice_codec.encode_event(*d), _add_to_invoice),
    "billing-commands.v1": Codec(_value(billing_commands_v1.decode),
                                 lambda _r, d: billing_commands_v1.encode(d)),
    "webhook-events.v1": Codec(_value(webhooks_v1.decode_message),
                               lambda _r, d: webhooks_v1.encode_message(d)),
    RETRY_FAMILY: DELIVERY,
    "webhook-dead-letter.v1": DELIVERY,
}
ALL_EXAMPLES = sorted(EXAMPLES.glob("*/*.json"))


def test_every_topic_has_examples_and_a_codec() -> None:
    retries = {t.name for t in WEBHOOK_RETRIES}
    topics = {RETRY_FAMILY if t.name in retries else t.name for t in ALL_TOPICS}
    folders = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert folders == topics
    assert set(CODECS) == topics
    for folder in folders:
        assert list((EXAMPLES / folder).glob("*.json")), f"no example for {folder}"


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_an_example_decodes_re_encodes_to_itself_and_survives_an_added_field(path: Path
                                                                          ) -> None:
    codec = CODECS[path.parent.name]
    record = load(path)
    decoded = codec.decode(record)
    if codec.encode is not None:
        again = codec.encode(record, decoded)
        assert again == record.value, "the example is not what Meterly writes"
        assert codec.decode(Record(record.key, again, record.headers, record.doc)) == decoded
    if record.doc is None:
        return  # a binary value has no fields to add
    extended = json.loads(json.dumps(record.doc))
    if isinstance(extended, dict):
        extended[UNKNOWN] = {"added": "later"}
    codec.nested(extended)
    with_field = Record(record.key, orjson.dumps(extended), record.headers, extended)
    assert codec.decode(with_field) == decoded


def test_a_dead_letter_carries_its_reason() -> None:
    paths = [*(EXAMPLES / "ingest.dead-letter.v1").glob("*.json"),
             *(EXAMPLES / "invalid-records.v1").glob("*.json")]
    for path in paths:
        headers = load(path).headers
        assert headers["meterly-error"]
        assert headers["meterly-source"].count("/") == 2
        if path.parent.name == "invalid-records.v1":
            assert headers["meterly-reader"]
