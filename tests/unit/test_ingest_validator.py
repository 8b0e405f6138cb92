"""The ingest validator's judgement of one record, without Kafka: the tenant it waits for,
and the time it judges by (protocol step 1 of processors/usage/ingest_validator.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME

from processors.runtime.keyring import Keys
from processors.tenants.core import keys
from processors.tenants.core.directory import Directory
from processors.usage.core.meters import MeterCache
from processors.usage.core.periods import AcceptanceWindow
from processors.usage.ingest_validator import IngestValidator
from schemas.admin_v1 import ApiKey, Tenant
from schemas.cloudevents import EventRejected

NOW = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)


RAW_KEY = "mtr_" + "k" * 43
RECORD_KEYS = Keys("records", (("records-1", b"r" * 32),))


class FakeMessage:
    def __init__(self, tenant: str, event_time: str, timestamp: tuple[int, int],
                 raw_key: str | None = RAW_KEY) -> None:
        self._key = tenant.encode()
        self._value = json.dumps({"specversion": "1.0", "id": "e1", "source": "s",
                                  "type": "calls", "time": event_time}).encode()
        self._timestamp = timestamp
        self._raw_key = raw_key

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        credential = [("meterly-key", self._raw_key.encode())] if self._raw_key else []
        return [("content-type", b"application/cloudevents+json"), *credential]

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


class FakeAdminTopic:
    """Applies a tenant's records when asked to catch up, as a lagging follower would."""

    def __init__(self, directory: Directory, arriving: Tenant | None) -> None:
        self.directory, self.arriving, self.waits = directory, arriving, 0

    def catch_up(self, timeout: float) -> bool:
        self.waits += 1
        if self.arriving is not None:
            self.directory.apply(self.arriving)
            self.directory.apply(_key(self.arriving.id))
        return True


def _key(tenant_id: str, raw: str = RAW_KEY, **changes: Any) -> ApiKey:
    return ApiKey(f"key_{tenant_id}", tenant_id, "ingest", raw[:12], keys.key_hash(raw),
                  "2026-11-01T00:00:00.000Z", scope="ingest", **changes)


def _tenant(tenant_id: str) -> Tenant:
    return Tenant(tenant_id, "Acme", "b@acme.test", "EUR", "active",
                  "2026-11-01T00:00:00.000Z", "2026-11-01T00:00:00.000Z")


def _validator(arriving: Tenant | None) -> tuple[IngestValidator, FakeAdminTopic]:
    validator = object.__new__(IngestValidator)
    directory = Directory()
    admin = FakeAdminTopic(directory, arriving)
    validator.directory, validator.admin_topic = directory, admin  # type: ignore[assignment]
    validator.require_time = False
    validator.source = "ingest"
    validator._waited_for = None
    validator._warned_create_time = False
    validator.record_keys = RECORD_KEYS
    validator.meter_cache = MeterCache()
    return validator, admin


def _msg(tenant: str = "ten_new", event_time: str = "2026-11-30T23:59:00Z",
         timestamp: tuple[int, int] | None = None) -> Any:
    stamp = timestamp or (TIMESTAMP_LOG_APPEND_TIME, int(NOW.timestamp() * 1000))
    return FakeMessage(tenant, event_time, stamp)


def test_a_tenant_created_a_moment_ago_is_waited_for_not_refused() -> None:
    validator, admin = _validator(arriving=_tenant("ten_new"))
    tenant_id, event = validator.validate(_msg(), NOW, AcceptanceWindow.at(NOW))
    assert tenant_id == "ten_new"
    assert event.id == "e1"
    assert admin.waits == 1


def test_an_unknown_tenant_is_refused_after_one_bounded_wait_per_batch() -> None:
    validator, admin = _validator(arriving=None)
    window = AcceptanceWindow.at(NOW)
    for _ in range(3):
        with pytest.raises(EventRejected, match="unknown tenant"):
            validator.validate(_msg("ten_nobody"), NOW, window)
    assert admin.waits == 1  # the rest of the batch does not wait again


def test_records_are_judged_by_their_broker_time() -> None:
    """A validator that lags past November's close (grace 1 h: at 01:00) still takes a
    November event the broker appended at 00:30; by processing time it would refuse it."""
    validator, _admin = _validator(arriving=_tenant("ten_new"))
    processed = NOW + timedelta(hours=2)
    judged = validator.judged_at(_msg(), processed)
    assert judged == NOW
    validator.validate(_msg(), judged, AcceptanceWindow.at(judged))
    with pytest.raises(EventRejected, match="closed"):
        validator.validate(_msg(), processed, AcceptanceWindow.at(processed))


def test_a_producer_time_is_never_trusted() -> None:
    validator, _admin = _validator(arriving=None)
    processed = NOW + timedelta(hours=2)
    forged = _msg(timestamp=(TIMESTAMP_CREATE_TIME, int(NOW.timestamp() * 1000)))
    assert validator.judged_at(forged, processed) == processed


def test_a_record_counts_only_with_a_usable_key_of_its_own_tenant() -> None:
    validator, admin = _validator(arriving=None)
    directory = validator.directory
    directory.apply(_tenant("ten_a"))
    directory.apply(_tenant("ten_b"))
    directory.apply(_key("ten_a"))
    window = AcceptanceWindow.at(NOW)
    tenant_id, _event = validator.validate(_msg("ten_a"), NOW, window)
    assert tenant_id == "ten_a"
    with pytest.raises(EventRejected, match="belongs to another tenant"):
        validator.validate(_msg("ten_b"), NOW, window)
    with pytest.raises(EventRejected, match="no ingest credential"):
        validator.validate(FakeMessage("ten_a", "2026-11-30T23:59:00Z",
                                       (TIMESTAMP_LOG_APPEND_TIME, 0), raw_key=None),
                           NOW, window)
    with pytest.raises(EventRejected, match="no API key Meterly knows"):
        validator.validate(FakeMessage("ten_a", "2026-11-30T23:59:00Z",
                                       (TIMESTAMP_LOG_APPEND_TIME, 0), raw_key="mtr_" + "z" * 43),
                           NOW, window)
    assert admin.waits == 1  # the unknown key was waited for once in the batch
    directory.apply(_key("ten_a", revoked_at="2026-11-30T00:00:00.000Z"))
    validator._waited_for = None
    with pytest.raises(EventRejected, match="revoked"):
        validator.validate(_msg("ten_a"), NOW, window)
