"""Operator identities, roles and the audit log (issue 14, items 4 and 5), against real
gateways, Kafka and Cassandra.

Roles are checked route by route from the OpenAPI document itself, so a route added later
without the right rule shows up here; the audit log is checked change by change for who,
what, before and after, and for the absence of every secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from processors.runtime.settings import Settings
from processors.tenants.core.operators import BILLING_CHANGES
from tests.stack import Stack, start_stack, wait_until

pytestmark = pytest.mark.integration

PROPAGATION = 30.0


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("operators"), gateways=2) as running:
        yield running


def _operator(stack: Stack, role: str, name: str | None = None) -> tuple[str, str]:
    with stack.client() as admin:
        made = admin.post("/v1/admin/operators", json={"name": name or f"{role} bot",
                                                       "role": role})
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["token"].startswith("mot_")
        assert body["prefix"] == body["token"][:12]
        return body["id"], body["token"]


def _mutating_routes(stack: Stack) -> list[tuple[str, str]]:
    spec = httpx.get(f"{stack.gateways[0].url}/openapi.json", timeout=30).json()
    return [(method.upper(), path) for path, item in spec["paths"].items()
            if path.startswith("/v1/admin/") for method in item
            if method in ("post", "put", "patch", "delete")]


def _filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x_none", path)


def test_every_operator_route_enforces_its_role(stack: Stack) -> None:
    _, read_only = _operator(stack, "read-only")
    _, billing = _operator(stack, "billing")
    routes = _mutating_routes(stack)
    assert len(routes) >= 18, routes
    assert set(routes) >= BILLING_CHANGES, "a billing change names no route"
    for token, role in ((read_only, "read-only"), (billing, "billing")):
        with stack.client(1, token) as client:
            for method, path in routes:
                answer = client.request(method, _filled(path), json={})
                refused = answer.status_code == 403 and \
                    answer.json()["type"].endswith("/role-forbidden")
                expected = role == "read-only" or (method, path) not in BILLING_CHANGES
                assert refused is expected, (role, method, path, answer.text)
                if refused:
                    assert role in answer.json()["detail"]
            # Reads are open to every role.
            assert client.get("/v1/admin/tenants").status_code == 200
            assert client.get("/v1/admin/audit").status_code == 200
    tenant, _key = stack.new_tenant("Billed By Bot")
    with stack.client(0, billing) as client:
        closed = client.post("/v1/admin/billing/close",
                             json={"period": "2026-11", "tenant_ids": [tenant]})
        assert closed.status_code == 202, closed.text
    with stack.client(0, read_only) as client:
        refused = client.post("/v1/admin/billing/close", json={"period": "2026-11"})
        assert refused.status_code == 403
        assert "takes the billing role" in refused.json()["detail"]


def _entries(stack: Stack, **params: Any) -> list[dict[str, Any]]:
    with stack.client() as admin:
        page = admin.get("/v1/admin/audit", params={"limit": 500, **params})
        assert page.status_code == 200, page.text
        entries: list[dict[str, Any]] = page.json()["data"]
        return entries


def test_every_change_is_in_the_audit_log_with_who_and_no_secret(stack: Stack) -> None:
    op_id, billing = _operator(stack, "billing", "finance")
    tenant, key = stack.new_tenant("Audited GmbH")
    with stack.client() as admin:
        keys = admin.get(f"/v1/admin/tenants/{tenant}/keys").json()
        key_id = keys[0]["id"]
        assert admin.patch(f"/v1/admin/tenants/{tenant}", json={"name": "Audited AG"}
                           ).status_code == 200
        assert admin.post(f"/v1/admin/tenants/{tenant}/suspend").status_code == 200
        assert admin.post(f"/v1/admin/tenants/{tenant}/reactivate").status_code == 200
        rotated = admin.post(f"/v1/admin/tenants/{tenant}/keys/{key_id}/rotate",
                             json={"overlap_seconds": 60})
        assert rotated.status_code == 201
        assert admin.post(f"/v1/admin/tenants/{tenant}/keys/{rotated.json()['id']}/revoke"
                          ).status_code == 200
        hook = admin.post(f"/v1/admin/tenants/{tenant}/webhooks",
                          json={"url": "https://hooks.example.com/meterly"})
        assert hook.status_code == 201, hook.text
        secret = hook.json()["secret"]
    with stack.client(0, billing) as finance:
        plan = finance.post("/v1/admin/plans", json={
            "name": f"audited-{tenant[-6:]}", "currency": "EUR", "flat_fee": "5.00",
            "prices": {}})
        assert plan.status_code == 201, plan.text
        assert finance.put(f"/v1/admin/tenants/{tenant}/plan",
                           json={"plan": plan.json()["name"]}).status_code == 200
        credit = finance.post(f"/v1/admin/tenants/{tenant}/credits", json={
            "kind": "grant", "amount": "3.00", "currency": "EUR", "description": "sorry"})
        assert credit.status_code == 201, credit.text
    entries = _entries(stack, tenant_id=tenant)
    actions = [e["action"] for e in reversed(entries)]  # oldest first
    assert actions == [
        "tenant.created", "api_key.created", "tenant.updated", "tenant.suspended",
        "tenant.reactivated", "api_key.created", "api_key.rotated", "api_key.revoked",
        # Assigning a plan writes the subscription, then the tenant's current plan.
        "webhook.created", "subscription.created", "tenant.updated", "credit.created"], actions
    by_action = {e["action"]: e for e in reversed(entries)}  # the last of each action
    renamed = next(e for e in reversed(entries) if e["action"] == "tenant.updated")
    assert renamed["before"]["name"] == "Audited GmbH"
    assert renamed["after"]["name"] == "Audited AG"
    assert by_action["tenant.updated"]["after"]["plan"] == plan.json()["name"]
    assert by_action["tenant.updated"]["actor"]["name"] == "finance"
    assert by_action["tenant.created"]["actor"] == {
        "kind": "operator", "id": "bootstrap", "name": "bootstrap-admin"}
    assert by_action["credit.created"]["actor"] == {
        "kind": "operator", "id": op_id, "name": "finance"}
    assert by_action["api_key.revoked"]["after"]["revoked_at"]
    text = str(entries)
    for hidden in (key, secret, secret.removeprefix("whsec_"), billing):
        assert hidden not in text
    assert "'hash'" not in text
    # The plan (no tenant) is there too, by its actor.
    plans = _entries(stack, action="plan.created")
    assert any(e["actor"]["id"] == op_id for e in plans)
    # Operators are audited; cursors page without overlap.
    ops = _entries(stack, action="operator.")
    assert any(e["after"]["name"] == "finance" for e in ops)
    with stack.client() as admin:
        first = admin.get("/v1/admin/audit", params={"limit": 3}).json()
        second = admin.get("/v1/admin/audit",
                           params={"limit": 3, "cursor": first["next_cursor"]}).json()
        assert len(first["data"]) == len(second["data"]) == 3
        assert not {e["id"] for e in first["data"]} & {e["id"] for e in second["data"]}
        bad = admin.get("/v1/admin/audit", params={"cursor": "nope"})
        assert bad.status_code == 400
        assert bad.json()["type"].endswith("/invalid-cursor")


def _console(stack: Stack, index: int) -> httpx.Client:
    url = stack.gateways[index].url
    return httpx.Client(base_url=url, timeout=30, headers={"Origin": url})


def _sign_in(client: httpx.Client, token: str) -> str:
    answer = client.post("/console/login", data={"token": token})
    assert answer.status_code == 303, answer.text
    cookie = client.cookies.get("meterly_console")
    assert cookie
    return cookie


def test_console_roles_and_sign_out_ends_the_session_everywhere(stack: Stack) -> None:
    _, read_only = _operator(stack, "read-only", "auditor")
    with _console(stack, 0) as browser:
        cookie = _sign_in(browser, read_only)
        assert browser.get("/console").status_code == 200
        page = browser.get("/console/audit")
        assert page.status_code == 200
        assert "console.signed_in" in page.text
        refused = browser.post("/console/tenants", data={
            "name": "Nope", "billing_email": "a@b.test", "currency": "EUR"})
        assert refused.status_code == 403
        assert "admin role" in refused.text
        # The same cookie works on the other gateway: the session is shared.
        with _console(stack, 1) as other:
            other.cookies.set("meterly_console", cookie, path="/console")
            assert other.get("/console", follow_redirects=False).status_code == 200
            assert browser.post("/console/logout").status_code == 303
            # Signed out on gateway 0; a copy of the cookie no longer works anywhere.
            gone = other.get("/console", follow_redirects=False)
            assert gone.status_code == 303
            assert gone.headers["location"] == "/console/login"
    # A forged cookie (right shape, wrong signature) signs nobody in.
    with _console(stack, 0) as forger:
        forger.cookies.set("meterly_console", cookie[:-4] + "abcd", path="/console")
        assert forger.get("/console", follow_redirects=False).status_code == 303
    signed = [e for e in _entries(stack, action="console.") if e["actor"]["name"] == "auditor"]
    assert [e["action"] for e in signed][:2] == ["console.signed_out", "console.signed_in"]


def test_the_bootstrap_token_is_revocable_once_another_admin_exists(stack: Stack) -> None:
    """Last: it revokes the token the rest of the module uses."""
    with stack.client() as admin:
        listed = admin.get("/v1/admin/operators").json()
        assert listed[0]["id"] == "bootstrap"
        assert listed[0]["name"] == "bootstrap-admin"
        # Admins other than the bootstrap token may exist from earlier tests: none here.
        assert all(o["role"] != "admin" for o in listed[1:])
        alone = admin.post("/v1/admin/operators/bootstrap/revoke")
        assert alone.status_code == 409, alone.text
        assert alone.json()["type"].endswith("/last-admin")
    admin_id, admin_token = _operator(stack, "admin", "ops lead")
    with stack.client(0, admin_token) as lead:
        revoked = lead.post("/v1/admin/operators/bootstrap/revoke")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"]
        last = lead.post(f"/v1/admin/operators/{admin_id}/revoke")
        assert last.status_code == 409
        assert "only admin" in last.json()["detail"]
    for index in (0, 1):
        with stack.client(index) as old:
            wait_until(f"the bootstrap token refused on gateway {index}",
                       lambda old=old: old.get("/v1/admin/tenants").status_code == 401,
                       timeout=PROPAGATION)
            assert "revoked" in old.get("/v1/admin/tenants").json()["detail"]
    with stack.client(1, admin_token) as lead:
        assert lead.get("/v1/admin/tenants").status_code == 200
        entries = lead.get("/v1/admin/audit", params={"action": "operator.revoked"}).json()
        assert entries["data"][0]["target"] == "operator:bootstrap"
        assert entries["data"][0]["actor"]["name"] == "ops lead"
