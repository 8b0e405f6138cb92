"""The admin applier, a Faust agent: tenant and key changes from the admin topic -> Cassandra.

Faust's at-least-once processing is enough here: each row is written ``USING TIMESTAMP``
its record's offset on the (single-partition) admin topic, so a record applied twice, or
an older one applied after a newer one, leaves the newer state in place.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from processors.kafka.faust_app import bytes_topic, faust_app, run_app
from processors.kafka.transactions import exit_now
from processors.runtime.settings import Settings
from processors.tenants.admin_tables import AdminTables
from schemas import admin_v1
from schemas.topics import ADMIN
from storage.cassandra import connect

log = logging.getLogger(__name__)


def build_app(settings: Settings) -> faust.App:
    assert settings.kafka_bootstrap
    assert settings.cassandra_hosts
    app = faust_app(settings, "admin-applier")
    topic = bytes_topic(app, ADMIN.full_name(settings.topic_prefix))
    _cluster, session = connect(settings.cassandra_hosts)
    tables = AdminTables(session, settings.cassandra_keyspace)

    @app.agent(topic)
    async def apply_admin_changes(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for event in stream.events():
            value = event.value
            if value is None:
                continue
            entity = admin_v1.decode(value)
            if not isinstance(entity, admin_v1.Tenant | admin_v1.ApiKey):
                # Plans, assignments and credits are read from the topic by the billing
                # agent and the gateways; Cassandra holds the tables key lookups need.
                continue
            try:
                # The driver blocks; keep the event loop (and Faust's heartbeats) free.
                await loop.run_in_executor(None, tables.write, entity, event.message.offset)
            except Exception:  # noqa: BLE001 - any failure means exit and restart
                exit_now()

    return app


def run_worker(settings: Settings) -> None:
    app = build_app(settings)
    run_app(app, "admin-applier")
