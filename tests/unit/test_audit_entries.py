"""What the audit log says about each change (pure)."""

from __future__ import annotations

from dataclasses import replace

import orjson

from processors.tenants.core.audit import admin_change
from processors.tenants.core.operators import BOOTSTRAP
from schemas.admin_v1 import ApiKey, Operator, SigningSecret, Tenant, WebhookEndpoint

TENANT = Tenant("ten_1", "Acme", "ops@acme.test", "EUR", "active", "t0", "t0")
KEY = ApiKey("key_1", "ten_1", "ci", "mtr_abcdefgh", "f" * 64, "t0")
HOOK = WebhookEndpoint("we_1", "ten_1", "https://h.example/", ("invoice.finalized",),
                       (SigningSecret("mse1.k.a.b"),), "t0", "t0")


def test_verbs() -> None:
    cases = [
        (None, TENANT, "tenant.created"),
        (TENANT, replace(TENANT, name="Acme 2"), "tenant.updated"),
        (TENANT, replace(TENANT, status="suspended"), "tenant.suspended"),
        (replace(TENANT, status="suspended"), TENANT, "tenant.reactivated"),
        (None, KEY, "api_key.created"),
        (KEY, replace(KEY, revoked_at="t1"), "api_key.revoked"),
        (KEY, replace(KEY, expires_at="t1"), "api_key.rotated"),
        (None, HOOK, "webhook.created"),
        (HOOK, replace(HOOK, deleted=True), "webhook.deleted"),
        (HOOK, replace(HOOK, secrets=(SigningSecret("mse1.k.c.d"), *HOOK.secrets)),
         "webhook.secret_rotated"),
        (HOOK, replace(HOOK, url="https://other.example/"), "webhook.updated"),
    ]
    for before, after, action in cases:
        entry = admin_change(BOOTSTRAP, before, after)
        assert entry.action == action, (before, after)
        assert entry.tenant_id == "ten_1"
        assert entry.actor.name == "bootstrap-admin"


def test_before_and_after_hold_no_secret() -> None:
    entry = admin_change(BOOTSTRAP, KEY, replace(KEY, revoked_at="t1"))
    assert entry.target == "key:key_1"
    assert entry.before is not None
    assert entry.after is not None
    assert "f" * 64 not in entry.before + entry.after
    assert orjson.loads(entry.after)["revoked_at"] == "t1"
    assert orjson.loads(entry.before)["prefix"] == "mtr_abcdefgh"
    hook = admin_change(BOOTSTRAP, None, HOOK)
    assert hook.after is not None
    assert "mse1" not in hook.after
    assert orjson.loads(hook.after)["secrets"] == [{"expires_at": None}]
    operator = Operator("op_1", "ci", "billing", "t0", "t0", "mot_abcdefgh", "e" * 64)
    made = admin_change(BOOTSTRAP, None, operator)
    assert made.action == "operator.created"
    assert made.tenant_id is None
    assert made.after is not None
    assert "e" * 64 not in made.after
    bootstrap = Operator("bootstrap", "bootstrap-admin", "admin", "t1", "t1", revoked_at="t1")
    assert admin_change(BOOTSTRAP, None, bootstrap).action == "operator.revoked"
