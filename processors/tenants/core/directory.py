"""The directory: every tenant, API key, plan version, subscription, credit and webhook
endpoint, as of the admin records applied so far.

Pure state, no Kafka: ``processors.tenants.follower`` feeds it from the compacted admin
topic on a thread of its own, while request handlers and workers query it. So every query
takes the lock and returns a copy (a record, or a new list or dict of records, which are
immutable): a caller can iterate what it got while the follower applies more.

Ordering rules: a tenant, a subscription or a webhook endpoint is replaced only by a record
that is at least as new (``updated_at``); keys, plan versions and credits are replaced by
the latest record of their id (a plan version never changes).
"""

from __future__ import annotations

import threading

from schemas.admin_v1 import (
    AdminEntity,
    ApiKey,
    CreditRecord,
    MeterVersion,
    Operator,
    PlanVersion,
    Subscription,
    Tenant,
    WebhookEndpoint,
)


class Directory:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, Tenant] = {}
        self._keys: dict[str, ApiKey] = {}
        self._by_hash: dict[str, ApiKey] = {}
        self._plans: dict[tuple[str, int], PlanVersion] = {}
        self._meters: dict[tuple[str, int], MeterVersion] = {}
        #: event type -> meter key -> its latest version (what ingest reads events with).
        self._meters_by_type: dict[str, dict[str, MeterVersion]] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._credits: dict[str, CreditRecord] = {}
        self._webhooks: dict[str, WebhookEndpoint] = {}
        self._operators: dict[str, Operator] = {}
        self._operators_by_hash: dict[str, Operator] = {}
        # By tenant, for the per-tenant queries (the dispatcher asks once per message).
        self._keys_by_tenant: dict[str, dict[str, ApiKey]] = {}
        self._credits_by_tenant: dict[str, dict[str, CreditRecord]] = {}
        self._hooks_by_tenant: dict[str, dict[str, WebhookEndpoint]] = {}

    def apply(self, entity: AdminEntity) -> None:
        with self._lock:
            if isinstance(entity, Tenant):
                current = self._tenants.get(entity.id)
                if current is None or current.updated_at <= entity.updated_at:
                    self._tenants[entity.id] = entity
            elif isinstance(entity, ApiKey):
                self._keys[entity.id] = entity
                self._by_hash[entity.hash] = entity
                self._keys_by_tenant.setdefault(entity.tenant_id, {})[entity.id] = entity
            elif isinstance(entity, PlanVersion):
                self._plans[(entity.name, entity.version)] = entity
            elif isinstance(entity, MeterVersion):
                self._meters[(entity.key, entity.version)] = entity
                newest = max(v for (k, v) in self._meters if k == entity.key)
                if entity.version == newest:
                    for others in self._meters_by_type.values():
                        others.pop(entity.key, None)  # a new version may read another type
                    event_type = str(entity.spec.get("event_type", ""))
                    self._meters_by_type.setdefault(event_type, {})[entity.key] = entity
            elif isinstance(entity, Subscription):
                current_sub = self._subscriptions.get(entity.tenant_id)
                if current_sub is None or current_sub.updated_at <= entity.updated_at:
                    self._subscriptions[entity.tenant_id] = entity
            elif isinstance(entity, WebhookEndpoint):
                current_hook = self._webhooks.get(entity.id)
                if current_hook is None or current_hook.updated_at <= entity.updated_at:
                    self._webhooks[entity.id] = entity
                    self._hooks_by_tenant.setdefault(entity.tenant_id, {})[entity.id] = entity
            elif isinstance(entity, Operator):
                current_op = self._operators.get(entity.id)
                if current_op is None or current_op.updated_at <= entity.updated_at:
                    self._operators[entity.id] = entity
                    if entity.hash is not None:
                        self._operators_by_hash[entity.hash] = entity
            else:
                self._credits[entity.id] = entity
                self._credits_by_tenant.setdefault(entity.tenant_id, {})[entity.id] = entity

    # ---- tenants and keys -------------------------------------------------------------

    def tenant(self, tenant_id: str) -> Tenant | None:
        with self._lock:
            return self._tenants.get(tenant_id)

    def tenants(self) -> list[Tenant]:
        """Every tenant, by id."""
        with self._lock:
            return [self._tenants[i] for i in sorted(self._tenants)]

    def key(self, key_id: str) -> ApiKey | None:
        with self._lock:
            return self._keys.get(key_id)

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        with self._lock:
            return self._by_hash.get(key_hash)

    def keys_of(self, tenant_id: str) -> list[ApiKey]:
        with self._lock:
            return list(self._keys_by_tenant.get(tenant_id, {}).values())

    # ---- meters -------------------------------------------------------------------------

    def meter(self, key: str, version: int) -> MeterVersion | None:
        with self._lock:
            return self._meters.get((key, version))

    def latest_meter(self, key: str) -> MeterVersion | None:
        with self._lock:
            versions = [v for (k, v) in self._meters if k == key]
            return self._meters[(key, max(versions))] if versions else None

    def meter_keys(self) -> list[str]:
        with self._lock:
            return sorted({key for key, _version in self._meters})

    def meters_for_type(self, event_type: str) -> list[MeterVersion]:
        """The latest version of every meter reading ``event_type``, by key."""
        with self._lock:
            found = self._meters_by_type.get(event_type, {})
            return [found[k] for k in sorted(found)]

    # ---- plans, subscriptions, credits ------------------------------------------------

    def plan(self, name: str, version: int) -> PlanVersion | None:
        with self._lock:
            return self._plans.get((name, version))

    def plans(self) -> dict[tuple[str, int], PlanVersion]:
        """Every plan version, by (name, version)."""
        with self._lock:
            return dict(self._plans)

    def plan_names(self) -> list[str]:
        with self._lock:
            return sorted({name for name, _version in self._plans})

    def latest_plan(self, name: str) -> PlanVersion | None:
        with self._lock:
            versions = [v for (n, v) in self._plans if n == name]
            return self._plans[(name, max(versions))] if versions else None

    def subscription(self, tenant_id: str) -> Subscription | None:
        with self._lock:
            return self._subscriptions.get(tenant_id)

    def subscriptions(self) -> dict[str, Subscription]:
        """Every tenant's plan history, by tenant id."""
        with self._lock:
            return dict(self._subscriptions)

    def credit(self, credit_id: str) -> CreditRecord | None:
        with self._lock:
            return self._credits.get(credit_id)

    def credits_of(self, tenant_id: str) -> list[CreditRecord]:
        with self._lock:
            return list(self._credits_by_tenant.get(tenant_id, {}).values())

    # ---- webhook endpoints ------------------------------------------------------------

    def webhook(self, endpoint_id: str) -> WebhookEndpoint | None:
        with self._lock:
            return self._webhooks.get(endpoint_id)

    def endpoints_of(self, tenant_id: str) -> list[WebhookEndpoint]:
        """The tenant's endpoints that are not deleted."""
        with self._lock:
            return [w for w in self._hooks_by_tenant.get(tenant_id, {}).values() if not w.deleted]

    def current(self, entity: AdminEntity) -> AdminEntity | None:
        """What the directory holds for ``entity``'s record now (None: nothing yet)."""
        found: AdminEntity | None
        if isinstance(entity, Tenant):
            found = self.tenant(entity.id)
        elif isinstance(entity, ApiKey):
            found = self.key(entity.id)
        elif isinstance(entity, PlanVersion):
            found = self.plan(entity.name, entity.version)
        elif isinstance(entity, MeterVersion):
            found = self.meter(entity.key, entity.version)
        elif isinstance(entity, Subscription):
            found = self.subscription(entity.tenant_id)
        elif isinstance(entity, WebhookEndpoint):
            found = self.webhook(entity.id)
        elif isinstance(entity, Operator):
            found = self.operator(entity.id)
        else:
            found = self.credit(entity.id)
        return found

    # ---- operators ----------------------------------------------------------------------

    def operator(self, operator_id: str) -> Operator | None:
        with self._lock:
            return self._operators.get(operator_id)

    def operator_by_hash(self, token_hash: str) -> Operator | None:
        with self._lock:
            return self._operators_by_hash.get(token_hash)

    def operators(self) -> list[Operator]:
        with self._lock:
            return list(self._operators.values())
