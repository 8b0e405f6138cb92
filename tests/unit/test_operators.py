"""Operator roles, tokens and the last-admin rule (pure)."""

from __future__ import annotations

import pytest

from processors.tenants.core import operators
from processors.tenants.core.keys import key_hash
from schemas.admin_v1 import Operator

CLOSE = "/v1/admin/billing/close"
TENANTS = "/v1/admin/tenants"


@pytest.mark.parametrize(
    ("role", "method", "route", "allowed"),
    [("read-only", "GET", TENANTS, True), ("read-only", "head", TENANTS, True),
     ("read-only", "POST", CLOSE, False), ("read-only", "POST", TENANTS, False),
     ("billing", "POST", CLOSE, True), ("billing", "post", CLOSE, True),
     ("billing", "PUT", "/v1/admin/tenants/{tenant_id}/plan", True),
     ("billing", "POST", TENANTS, False),
     ("billing", "POST", "/v1/admin/tenants/{tenant_id}/keys", False),
     ("billing", "POST", "/v1/admin/operators", False),
     ("billing", "DELETE", "/v1/admin/tenants/{tenant_id}/webhooks/{endpoint_id}", False),
     ("admin", "POST", "/v1/admin/operators", True), ("admin", "DELETE", TENANTS, True)],
)
def test_permitted(role: operators.OperatorRole, method: str, route: str,
                   allowed: bool) -> None:
    assert operators.permitted(role, method, route) is allowed


def test_a_refusal_names_the_role_it_takes() -> None:
    assert operators.refusal("read-only", "post", CLOSE).endswith("takes the billing role")
    assert operators.refusal("billing", "POST", TENANTS).endswith("takes the admin role")


def test_tokens_are_random_and_only_their_hash_is_kept() -> None:
    made = {operators.new_token() for _ in range(50)}
    assert len({t.raw for t in made}) == 50
    for token in made:
        assert token.raw.startswith("mot_")
        assert operators.looks_like_token(token.raw)
        assert token.prefix == token.raw[:12]
        assert token.hash == key_hash(token.raw)
        assert token.raw not in token.hash
    assert not operators.looks_like_token("mot_short")
    assert not operators.looks_like_token("mtr_" + "x" * 43)


def _op(op_id: str, role: operators.OperatorRole = "admin",
        revoked: bool = False) -> Operator:
    return Operator(op_id, op_id, role, "t", "t", revoked_at="t" if revoked else None)


def test_no_revocation_leaves_the_deployment_without_an_admin() -> None:
    refused = operators.revocation_refused
    assert refused("bootstrap", [], bootstrap_revoked=False) is not None
    assert refused("bootstrap", [_op("op_b", "billing")], False) is not None
    assert refused("bootstrap", [_op("op_a", revoked=True)], False) is not None
    assert refused("bootstrap", [_op("op_a")], False) is None
    assert refused("op_a", [_op("op_a")], bootstrap_revoked=True) is not None
    assert refused("op_a", [_op("op_a")], bootstrap_revoked=False) is None
    assert refused("op_a", [_op("op_a"), _op("op_c")], bootstrap_revoked=True) is None
    assert refused("op_b", [_op("op_a"), _op("op_b", "read-only")], True) is None
    assert operators.active_admins([_op("op_a"), _op("op_b", "billing")], False) == {
        "op_a", "bootstrap"}
