"""The HTTP contract end to end: real gateway processes, Kafka, counting worker, Cassandra."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from processors.runtime.settings import Settings
from schemas.rfc3339 import parse_time
from tests.stack import Stack, start_stack, wait_for_usage, wait_until

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
#: How long a change may take to reach the other gateway, or a key overlap to end, before
#: the test fails: generous, as the machine may be shared; the tests poll, so a fast run
#: is not slowed down.
PROPAGATION = 30.0


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("stack"), gateways=2) as running:
        yield running


def _event(event_id: str, meter: str = "api.calls", quantity: Any = 1,
           **extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": event_id, "source": "billing-test", "type": meter,
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "data": {"quantity": quantity}, **extra}


def _assert_problem(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["type"].endswith("/" + kind), body
    assert body["title"]
    assert body["detail"]


def test_three_ingest_paths_count_exactly(stack: Stack) -> None:
    _tenant, key = stack.new_tenant()
    with stack.client(0, key) as gw0, stack.client(1, key) as gw1:
        for i in range(7):
            r = (gw0 if i % 2 else gw1).get("/v1/resources/search")
            assert r.status_code == 200, r.text
            assert r.json()["resource"] == "search"
        assert gw0.post("/v1/resources/search").status_code == 200
        batch = [_event(f"b-{i}", "tokens", "0.125") for i in range(100)]
        r = gw0.post("/v1/events", json=batch)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 100
        single = gw1.post("/v1/events", content=httpx.Request(
            "POST", "/", json=_event("one", "tokens", "1.5")).content,
            headers={"Content-Type": "application/cloudevents+json"})
        assert single.json()["accepted"] == 1
    wait_for_usage(stack, key, {"search": (8, "8"), "tokens": (101, "14.000")})


def test_duplicates_count_once_across_gateways_and_concurrent_senders(stack: Stack) -> None:
    _tenant, key = stack.new_tenant()
    batch = [_event(f"d-{i}", quantity=2) for i in range(50)]
    with stack.client(0, key) as gw0, stack.client(1, key) as gw1:
        first = gw0.post("/v1/events", json=batch).json()
        assert first["accepted"] == 50
        again = gw0.post("/v1/events", json=batch).json()
        assert again["duplicates"] == 50
        assert {r["status"] for r in again["receipts"]} == {"duplicate"}
        # Another gateway process has not seen them: accepted there, counted once anyway.
        elsewhere = gw1.post("/v1/events", json=batch).json()
        assert elsewhere["accepted"] + elsewhere["duplicates"] == 50
        overlap = [_event(f"d-{i}", quantity=2) for i in range(40, 70)]
        assert gw1.post("/v1/events", json=overlap).json()["rejected"] == 0
        inside = gw0.post("/v1/events", json=[_event("same"), _event("same")]).json()
        assert [r["status"] for r in inside["receipts"]] == ["accepted", "duplicate"]

    results: list[int] = []

    def sender(index: int) -> None:
        with stack.client(index % 2, key) as client:
            body = [_event(f"c-{i}", quantity=2) for i in range(30)]
            results.append(client.post("/v1/events", json=body).status_code)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6
    # 70 distinct d- ids, 1 "same", 30 distinct c- ids.
    wait_for_usage(stack, key, {"api.calls": (101, str(Decimal(70 * 2 + 1 + 30 * 2)))})


def test_tenants_are_isolated(stack: Stack) -> None:
    tenant_a, key_a = stack.new_tenant("A")
    tenant_b, key_b = stack.new_tenant("B")
    with stack.client(0, key_b) as b:
        assert b.post("/v1/events", json=[_event("b-only", "secret.meter")]).status_code == 200
    with stack.client(0, key_a) as a:
        a.get("/v1/resources/a.meter")
        wait_for_usage(stack, key_a, {"a.meter": (1, "1")})
        wait_for_usage(stack, key_b, {"secret.meter": (1, "1")})
        for params in ({"tenant_id": tenant_b}, {"tenant": tenant_b}):
            body = a.get("/v1/usage", params=params).json()
            assert body["tenant_id"] == tenant_a
            assert [m["meter"] for m in body["meters"]] == ["a.meter"]
        _assert_problem(a.get(f"/v1/admin/tenants/{tenant_b}/usage"), 403, "forbidden")
        _assert_problem(a.get("/v1/admin/tenants"), 403, "forbidden")
    with stack.client(0) as operator:
        usage_b = operator.get(f"/v1/admin/tenants/{tenant_b}/usage").json()
        assert [m["meter"] for m in usage_b["meters"]] == ["secret.meter"]


def test_bad_input_gets_problems_and_loses_nothing(stack: Stack) -> None:
    tenant, key = stack.new_tenant()
    with stack.client(0, key) as gw:
        assert gw.post("/v1/events", json=[_event("good-1")]).json()["accepted"] == 1
        _assert_problem(gw.post("/v1/events", content=b"[{not json",
                                headers={"Content-Type": "application/json"}),
                        400, "malformed-json")
        _assert_problem(gw.post("/v1/events", json={"not": "a list"}), 422, "invalid-batch")
        _assert_problem(gw.post("/v1/events", json=[]), 422, "invalid-batch")
        _assert_problem(gw.post("/v1/events", json=[_event(f"m{i}") for i in range(1001)]),
                        413, "too-many-events")
        _assert_problem(gw.post("/v1/events", content=b"[" + b" " * (1 << 20) + b"]",
                                headers={"Content-Type": "application/json"}),
                        413, "payload-too-large")
        _assert_problem(gw.post("/v1/events", content=b"[]",
                                headers={"Content-Type": "text/plain"}),
                        415, "unsupported-media-type")
        mixed = gw.post("/v1/events", json=[
            _event("good-2"),
            _event("bad-type", quantity="lots"),
            {"specversion": "1.0", "source": "x", "type": "api.calls"},
            _event("too-old", time="2020-01-01T00:00:00Z"),
            _event("future", time=(datetime.now(UTC) + timedelta(hours=1)).isoformat()),
            "not an object",
        ]).json()
        assert [r["status"] for r in mixed["receipts"]] == [
            "accepted", "rejected", "rejected", "rejected", "rejected", "rejected"]
        assert all(r["reason"] for r in mixed["receipts"][1:])
        assert "closed" in mixed["receipts"][3]["reason"]
        assert "future" in mixed["receipts"][4]["reason"]
        _assert_problem(gw.get("/v1/resources/bad%20name!"), 422, "invalid-meter")
    unknown = httpx.get(f"{stack.gateways[0].url}/v1/usage",
                        headers={"Authorization": "Bearer mtr_" + "x" * 43})
    _assert_problem(unknown, 401, "invalid-api-key")
    _assert_problem(httpx.get(f"{stack.gateways[0].url}/v1/usage"), 401, "unauthenticated")
    with stack.client(0) as operator:
        _assert_problem(operator.post("/v1/admin/tenants", json={"name": "x"}),
                        422, "invalid-request")
        _assert_problem(operator.post("/v1/admin/tenants", json={
            "name": "x", "billing_email": "a@example.com", "currency": "XXX"}),
            422, "unsupported-currency")
        _assert_problem(operator.get("/v1/admin/tenants/ten_missing"), 404, "tenant-not-found")
        assert operator.post(f"/v1/admin/tenants/{tenant}/suspend").json()["status"] == \
            "suspended"
    with stack.client(1, key) as other:
        # Probed with a read: a metered call made before the suspension arrives would count.
        # The other gateway follows the admin topic; how fast is not asserted here (a slow
        # shared machine would make that flaky), only that it gets there.
        wait_until("the suspension on gateway 1",
                   lambda: other.get("/v1/usage").status_code == 403, timeout=PROPAGATION)
        _assert_problem(other.get("/v1/resources/x"), 403, "tenant-suspended")
    with stack.client(0) as operator:
        operator.post(f"/v1/admin/tenants/{tenant}/reactivate")
    wait_for_usage(stack, key, {"api.calls": (2, "2")})


def test_keys_work_at_once_revoke_everywhere_and_rotate(stack: Stack) -> None:
    tenant, key = stack.new_tenant()
    with stack.client(0) as operator:
        made = operator.post(f"/v1/admin/tenants/{tenant}/keys", json={"name": "ci"}).json()
        assert made["key"].startswith("mtr_")
        assert len(made["key"]) >= 4 + 43
        assert made["prefix"] == made["key"][:12]
    with stack.client(0, made["key"]) as same_process:
        assert same_process.get("/v1/resources/x").status_code == 200
    with stack.client(0) as operator:
        listed = operator.get(f"/v1/admin/tenants/{tenant}/keys").json()
        assert {k["id"] for k in listed} >= {made["id"]}
        assert all("key" not in k and "hash" not in k for k in listed)
        operator.post(f"/v1/admin/tenants/{tenant}/keys/{made['id']}/revoke")
    with stack.client(1, made["key"]) as other:
        wait_until("the revocation on gateway 1",
                   lambda: other.get("/v1/resources/x").status_code == 401,
                   timeout=PROPAGATION)
    with stack.client(0) as operator:
        rotated = operator.post(f"/v1/admin/tenants/{tenant}/keys/"
                                f"{next(k for k in listed if k['id'] != made['id'])['id']}"
                                "/rotate", json={"overlap_seconds": 2})
        assert rotated.status_code == 201, rotated.text
        new_key = rotated.json()["key"]
    with stack.client(0, key) as old, stack.client(0, new_key) as new:
        assert old.get("/v1/resources/x").status_code == 200
        assert new.get("/v1/resources/x").status_code == 200
        # The old key stops once the 2 s overlap ends: polled, not slept past. Probed with
        # the read-only usage call, so the probes count nothing.
        wait_until("the old key refused after the overlap",
                   lambda: old.get("/v1/usage").status_code == 401, timeout=PROPAGATION)
        _assert_problem(old.get("/v1/resources/x"), 401, "invalid-api-key")
        assert new.get("/v1/resources/x").status_code == 200
    old_id = next(k for k in listed if k["id"] != made["id"])["id"]
    new_id = rotated.json()["id"]
    with stack.client(0) as operator:
        # An expired key stays expired: rotating it again is refused, not a 30-day revival.
        _assert_problem(operator.post(f"/v1/admin/tenants/{tenant}/keys/{old_id}/rotate",
                                      json={}), 409, "key-expired")
        # A key in its overlap keeps its end when rotated again: never a later one.
        first = operator.post(f"/v1/admin/tenants/{tenant}/keys/{new_id}/rotate",
                              json={"overlap_seconds": 3600})
        assert first.status_code == 201, first.text
        again = operator.post(f"/v1/admin/tenants/{tenant}/keys/{new_id}/rotate",
                              json={"overlap_seconds": 86400})
        assert again.status_code == 201, again.text
        # A publish is applied to this gateway's directory before it answers.
        keys = operator.get(f"/v1/admin/tenants/{tenant}/keys").json()
        ended = next(k["expires_at"] for k in keys if k["id"] == new_id)
        left = (parse_time(ended) - datetime.now(UTC)).total_seconds()
        assert 3000 < left <= 3600, ended


def test_operator_token_is_required_and_tenant_pagination(stack: Stack) -> None:
    names = [f"page-{uuid.uuid4().hex[:6]}-{i}" for i in range(3)]
    for name in names:
        stack.new_tenant(name)
    with httpx.Client(base_url=stack.gateways[0].url,
                      headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}) as bad:
        _assert_problem(bad.get("/v1/admin/tenants"), 401, "unauthenticated")
    seen: list[str] = []
    ids: list[str] = []
    with stack.client(0) as operator:
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = operator.get("/v1/admin/tenants", params=params).json()
            seen += [t["name"] for t in page["data"]]
            ids += [t["id"] for t in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert set(names) <= set(seen)
    assert len(ids) == len(set(ids)), "a tenant appeared on two pages"
    assert ids == sorted(ids)


def test_idempotency_key_replays_the_first_answer(stack: Stack) -> None:
    _tenant, key = stack.new_tenant()
    with stack.client(0, key) as gw:
        headers = {"Idempotency-Key": "req-1"}
        body = [_event("i-1")]
        first = gw.post("/v1/events", json=body, headers=headers)
        second = gw.post("/v1/events", json=body, headers=headers)
        assert second.headers.get("idempotent-replayed") == "true"
        assert second.json() == first.json()
        assert second.json()["accepted"] == 1
        _assert_problem(gw.post("/v1/events", json=[_event("i-2")], headers=headers),
                        422, "idempotency-key-reused")
    wait_for_usage(stack, key, {"api.calls": (1, "1")})


def test_a_metered_call_retried_with_its_idempotency_key_counts_once(stack: Stack) -> None:
    """A call whose answer was lost is repeated, on the same and on the other gateway
    (whose memory of recent ids does not have it: the counter deduplicates it)."""
    _tenant, key = stack.new_tenant()
    with stack.client(0, key) as gw0, stack.client(1, key) as gw1:
        headers = {"Idempotency-Key": "call-7"}
        first = gw0.get("/v1/resources/render", headers=headers)
        assert first.status_code == 200, first.text
        for gw in (gw0, gw1, gw1):
            again = gw.get("/v1/resources/render", headers=headers)
            assert again.json()["event_id"] == first.json()["event_id"]
        other = gw0.get("/v1/resources/render", headers={"Idempotency-Key": "call-8"})
        assert other.json()["event_id"] != first.json()["event_id"]
        assert gw0.get("/v1/resources/render").status_code == 200  # no key: a new event
        _assert_problem(gw0.get("/v1/resources/render", headers={"Idempotency-Key": "a b"}),
                        400, "invalid-idempotency-key")
    wait_for_usage(stack, key, {"render": (3, "3")})


def test_rate_limit_answers_429_with_headers(stack: Stack) -> None:
    _tenant, key = stack.new_tenant(rate_limit_per_second=5)
    with stack.client(0, key) as gw:
        codes = [gw.get("/v1/resources/rl") for _ in range(8)]
    assert [c.status_code for c in codes[:5]] == [200] * 5
    limited = [c for c in codes if c.status_code == 429]
    assert limited
    _assert_problem(limited[0], 429, "rate-limited")
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].headers["RateLimit-Limit"] == "5"
    assert codes[0].headers["RateLimit-Remaining"] == "4"


def _cross_site(answer: httpx.Response) -> bool:
    return answer.status_code == 403 and "cross-site" in answer.text


def test_console_forms_need_the_console_as_origin_or_referer(stack: Stack) -> None:
    """The session cookie is SameSite=Strict; beyond that, a form post must say it came from
    the console (review L3: one with neither Origin nor Referer used to be accepted)."""
    url = stack.gateways[0].url
    with httpx.Client(base_url=url, timeout=30) as browser:
        assert _cross_site(browser.post("/console/login",
                                            data={"token": stack.admin_token}))
        signed_in = browser.post("/console/login", data={"token": stack.admin_token},
                                 headers={"Origin": url})
        assert signed_in.status_code == 303, signed_in.text
        assert browser.cookies.get("meterly_console")
        name = f"csrf-{uuid.uuid4().hex[:6]}"
        form = {"name": name, "billing_email": "ops@acme.test", "currency": "EUR"}
        for headers in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"},
                        {"Referer": "http://evil.example/console"},
                        {"Origin": url.replace("http://", "https://")}):
            assert _cross_site(browser.post("/console/tenants", data=form, headers=headers)),\
                headers
        with stack.client(0) as operator:
            names = {t["name"] for t in operator.get("/v1/admin/tenants",
                                                     params={"limit": 200}).json()["data"]}
        assert name not in names
        made = browser.post("/console/tenants", data=form,
                            headers={"Referer": f"{url}/console"})
        assert made.status_code == 303, made.text
        assert "/console/tenants/" in made.headers["location"]
