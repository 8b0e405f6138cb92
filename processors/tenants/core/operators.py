"""Operator identities and what each role may do (pure).

Three roles, each including the one below it:

| role        | may                                                                       |
|-------------|---------------------------------------------------------------------------|
| `read-only` | read every operator route and console page                                |
| `billing`   | also close periods, void invoices, create plans, assign plans, add credits |
| `admin`     | also everything else: tenants, API keys, webhooks, replays, operators     |

An operator authenticates with an operator token (``mot_`` + 256 random bits; only its
SHA-256 is kept, as for API keys, see ``processors.tenants.core.keys``), with the bootstrap
token (METERLY_ADMIN_TOKEN, the admin ``bootstrap-admin``, which ``meterly run`` generates and
the CLI uses), or in the console with OpenID Connect as an operator registered by e-mail.
The bootstrap token can be revoked once another admin exists; no revocation may leave the
deployment without an admin.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from processors.tenants.core.keys import key_hash
from schemas.admin_v1 import Operator, OperatorRole

ROLES: tuple[OperatorRole, ...] = ("read-only", "billing", "admin")
TOKEN_PREFIX = "mot_"
DISPLAY_PREFIX_LENGTH = 12
BOOTSTRAP_ID = "bootstrap"
BOOTSTRAP_NAME = "bootstrap-admin"
READS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The changes the billing role may make, as (method, route path) of the operator API.
BILLING_CHANGES = frozenset({
    ("POST", "/v1/admin/billing/close"),
    ("POST", "/v1/admin/tenants/{tenant_id}/invoices/{inv_id}/void"),
    ("POST", "/v1/admin/plans"),
    ("POST", "/v1/admin/meters"),
    ("PUT", "/v1/admin/tenants/{tenant_id}/plan"),
    ("POST", "/v1/admin/tenants/{tenant_id}/credits"),
})


@dataclass(frozen=True)
class Actor:
    """Who made a request, as the audit log names them."""

    kind: str  # "operator", "tenant-key" or "system"
    id: str
    name: str
    role: OperatorRole | None = None


BOOTSTRAP = Actor("operator", BOOTSTRAP_ID, BOOTSTRAP_NAME, "admin")


def permitted(role: OperatorRole, method: str, route: str) -> bool:
    """Whether ``role`` may call ``method route`` (a route path template, as routed)."""
    if role == "admin" or method.upper() in READS:
        return True
    return role == "billing" and (method.upper(), route) in BILLING_CHANGES


def refusal(role: OperatorRole, method: str, route: str) -> str:
    needed = "billing" if (method.upper(), route) in BILLING_CHANGES else "admin"
    return f"the {role} role may not {method.upper()} {route}; it takes the {needed} role"


@dataclass(frozen=True)
class NewToken:
    raw: str
    prefix: str
    hash: str


def new_token() -> NewToken:
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return NewToken(raw, raw[:DISPLAY_PREFIX_LENGTH], key_hash(raw))


def looks_like_token(raw: str) -> bool:
    return raw.startswith(TOKEN_PREFIX) and 40 <= len(raw) <= 64


def active_admins(operators: Iterable[Operator], bootstrap_revoked: bool) -> set[str]:
    """Ids of the admins that can still act (the bootstrap token included unless revoked)."""
    admins = {o.id for o in operators
              if o.role == "admin" and o.revoked_at is None and o.id != BOOTSTRAP_ID}
    return admins if bootstrap_revoked else {*admins, BOOTSTRAP_ID}


def revocation_refused(target: str, operators: Iterable[Operator],
                       bootstrap_revoked: bool) -> str | None:
    """Why revoking operator ``target`` would be refused, or None when it may go."""
    admins = active_admins(operators, bootstrap_revoked)
    if target in admins and admins == {target}:
        if target == BOOTSTRAP_ID:
            return ("the bootstrap token is the only admin: create another admin before "
                    "revoking it")
        return f"{target} is the only admin left: create another admin first"
    return None
