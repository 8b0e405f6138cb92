"""The tenant directory: what the admin records say, and queries that copy under the lock."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

from processors.tenants.core.directory import Directory
from processors.tenants.core.keys import REFUSALS, key_state
from schemas.admin_v1 import (
    ApiKey,
    Assignment,
    CreditRecord,
    PlanVersion,
    Subscription,
    Tenant,
    WebhookEndpoint,
)

T0 = "2026-11-01T00:00:00.000Z"
T1 = "2026-11-02T00:00:00.000Z"


def tenant(tenant_id: str, updated_at: str = T0, status: str = "active") -> Tenant:
    return Tenant(tenant_id, tenant_id.title(), "b@acme.test", "EUR", status,  # type: ignore[arg-type]
                  T0, updated_at)


def credit(credit_id: str, tenant_id: str = "t1") -> CreditRecord:
    return CreditRecord(credit_id, tenant_id, "grant", "10", "EUR", "welcome", T0)


def test_a_newer_tenant_record_wins_and_an_older_one_is_ignored() -> None:
    directory = Directory()
    directory.apply(tenant("t1", T1, "suspended"))
    directory.apply(tenant("t1", T0, "active"))  # older, e.g. replayed: ignored
    found = directory.tenant("t1")
    assert found is not None
    assert found.status == "suspended"
    assert [t.id for t in directory.tenants()] == ["t1"]
    assert directory.tenant("t2") is None


def test_keys_by_id_by_hash_and_by_tenant() -> None:
    directory = Directory()
    key = ApiKey("key_1", "t1", "prod", "mtr_abc", "h1", T0)
    directory.apply(key)
    directory.apply(ApiKey("key_2", "t2", "prod", "mtr_def", "h2", T0))
    assert directory.key("key_1") == key
    assert directory.key_by_hash("h1") == key
    assert directory.keys_of("t1") == [key]
    revoked = replace(key, revoked_at=T1)
    directory.apply(revoked)
    assert directory.keys_of("t1") == [revoked]


def test_plans_latest_version_and_names() -> None:
    directory = Directory()
    for version in (1, 3, 2):
        directory.apply(PlanVersion("pro", version, T0, {"version": version}))
    directory.apply(PlanVersion("basic", 1, T0, {}))
    latest = directory.latest_plan("pro")
    assert latest is not None
    assert latest.version == 3
    assert directory.latest_plan("none") is None
    assert directory.plan_names() == ["basic", "pro"]
    assert set(directory.plans()) == {("pro", 1), ("pro", 2), ("pro", 3), ("basic", 1)}


def test_subscriptions_credits_and_endpoints() -> None:
    directory = Directory()
    newer = Subscription("t1", (Assignment("pro", 1, T0),), T1)
    directory.apply(newer)
    directory.apply(Subscription("t1", (), T0))  # older: ignored
    assert directory.subscription("t1") == newer
    assert directory.subscriptions() == {"t1": newer}
    directory.apply(credit("c1"))
    directory.apply(credit("c2", "t2"))
    assert [c.id for c in directory.credits_of("t1")] == ["c1"]
    hook = WebhookEndpoint("we_1", "t1", "https://h.example.com", ("invoice.finalized",), (),
                           T0, T0)
    directory.apply(hook)
    assert directory.endpoints_of("t1") == [hook]
    directory.apply(replace(hook, deleted=True, updated_at=T1))
    assert directory.endpoints_of("t1") == []
    webhook = directory.webhook("we_1")
    assert webhook is not None
    assert webhook.deleted


def test_queries_return_copies_a_caller_can_iterate_while_records_arrive() -> None:
    directory = Directory()
    done = threading.Event()

    def follower() -> None:
        for i in range(20_000):
            directory.apply(credit(f"c{i:05d}"))
        done.set()

    thread = threading.Thread(target=follower)
    thread.start()
    seen = 0
    while not done.is_set():
        credits = directory.credits_of("t1")
        # Iterating the copy while the follower inserts is safe, and never goes backwards.
        count = sum(1 for _ in credits)
        assert count >= seen
        seen = count
    thread.join()
    assert len(directory.credits_of("t1")) == 20_000
    listed = directory.credits_of("t1")
    directory.apply(credit("late"))
    assert len(listed) == 20_000  # what a caller holds is its own


def test_key_state() -> None:
    key = ApiKey("key_1", "t1", "prod", "mtr_abc", "h1", T0)
    now = datetime(2026, 11, 5, tzinfo=UTC)
    assert key_state(key, now) == "usable"
    assert key_state(replace(key, revoked_at=T1), now) == "revoked"
    assert key_state(replace(key, expires_at=T1), now) == "expired"
    assert key_state(replace(key, expires_at="2026-12-01T00:00:00Z"), now) == "usable"
    assert REFUSALS["revoked"] == "the API key was revoked"


def test_meters_are_versioned_and_found_by_the_type_they_read() -> None:
    from schemas.admin_v1 import MeterVersion

    directory = Directory()

    def meter(key: str, version: int, event_type: str) -> MeterVersion:
        return MeterVersion(key, version, "2026-12-01T00:00:00.000Z",
                            {"key": key, "event_type": event_type, "aggregation": "sum"})

    directory.apply(meter("tokens", 2, "llm.tokens"))
    directory.apply(meter("tokens", 1, "llm.old"))  # an older version read after a newer
    directory.apply(meter("calls", 1, "llm.tokens"))
    assert [(m.key, m.version) for m in directory.meters_for_type("llm.tokens")] == [
        ("calls", 1), ("tokens", 2)]
    assert directory.meters_for_type("llm.old") == []
    directory.apply(meter("tokens", 3, "llm.v3"))  # a new version reads another type
    assert [m.key for m in directory.meters_for_type("llm.tokens")] == ["calls"]
    assert [m.version for m in directory.meters_for_type("llm.v3")] == [3]
    assert directory.latest_meter("tokens") == meter("tokens", 3, "llm.v3")
    assert directory.meter("tokens", 1) == meter("tokens", 1, "llm.old")
    assert directory.meter_keys() == ["calls", "tokens"]
