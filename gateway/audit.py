"""Every change an operator (or a tenant key) makes, recorded in the audit log.

The actor of a request is set once it is authenticated (``gateway.runtime.remember`` for
the API, ``gateway.console`` for console sessions) in a context variable, so the services
need not pass it along. Admin-record changes are recorded by ``AuditedTopic`` as they are
published, with the entity before and after; closes, voids and replays, which are no admin
records, call ``record``. An entry is written once the change itself was acknowledged, so
the log never holds a change that did not happen.
"""

from __future__ import annotations

from contextvars import ContextVar

from starlette.concurrency import run_in_threadpool

from processors.tenants.audit_store import AuditStore
from processors.tenants.core import audit
from processors.tenants.core.directory import Directory
from processors.tenants.core.operators import Actor
from processors.tenants.follower import AdminTopic
from schemas.admin_v1 import AdminEntity

SYSTEM = Actor("system", "gateway", "gateway")
ACTOR: ContextVar[Actor | None] = ContextVar("meterly_actor", default=None)


def current_actor() -> Actor:
    return ACTOR.get() or SYSTEM


class AuditLog:
    def __init__(self, store: AuditStore) -> None:
        self.store = store

    async def write(self, entry: audit.Entry) -> None:
        await run_in_threadpool(self.store.write, entry)

    async def record(self, action: str, target: str, tenant_id: str | None,
                     detail: str | None = None) -> None:
        await self.write(audit.Entry(current_actor(), action, target, tenant_id, None, None,
                                     detail))


class AuditedTopic:
    """``AdminTopic.publish``, recording each change in the audit log."""

    def __init__(self, topic: AdminTopic, directory: Directory, log: AuditLog) -> None:
        self.topic = topic
        self.directory = directory
        self.log = log

    async def publish(self, entity: AdminEntity) -> None:
        before = self.directory.current(entity)
        await self.topic.publish(entity)
        await self.log.write(audit.admin_change(current_actor(), before, entity))
