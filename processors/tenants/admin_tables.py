"""Cassandra side of the admin state: tenants and API keys, versioned by admin-topic offset."""

from __future__ import annotations

from cassandra.cluster import Session

from schemas.admin_v1 import ApiKey, Tenant


class AdminTables:
    def __init__(self, session: Session, keyspace: str) -> None:
        self._session = session
        self._tenant = session.prepare(
            f"INSERT INTO {keyspace}.tenants (id, name, billing_email, currency, status, plan, "
            "webhook_url, rate_limit_per_second, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
        )
        self._key = session.prepare(
            f"INSERT INTO {keyspace}.api_keys (id, tenant_id, name, prefix, key_hash, "
            "created_at, revoked_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "USING TIMESTAMP ?"
        )
        self._get_tenant = session.prepare(
            f"SELECT id, name, status FROM {keyspace}.tenants WHERE id = ?")

    def write(self, entity: Tenant | ApiKey, version: int) -> None:
        # Offsets start at 0; Cassandra timestamps must be positive to beat "no write".
        stamp = version + 1
        if isinstance(entity, Tenant):
            self._session.execute(self._tenant, (
                entity.id, entity.name, entity.billing_email, entity.currency, entity.status,
                entity.plan, entity.webhook_url, entity.rate_limit_per_second,
                entity.created_at, entity.updated_at, stamp))
        else:
            self._session.execute(self._key, (
                entity.id, entity.tenant_id, entity.name, entity.prefix, entity.hash,
                entity.created_at, entity.revoked_at, entity.expires_at, stamp))

    def tenant_status(self, tenant_id: str) -> str | None:
        row = self._session.execute(self._get_tenant, (tenant_id,)).one()
        return None if row is None else str(row.status)
