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

from ops.logs import faust_worker_logging
from ops.settings import Settings
from processors.transactions import exit_now
from schemas import admin_v1
from schemas.topics import ADMIN
from storage.admin_tables import AdminTables
from storage.cassandra import connect

log = logging.getLogger(__name__)


def build_app(settings: Settings) -> faust.App:
    assert settings.kafka_bootstrap
    assert settings.cassandra_hosts
    datadir = settings.home / "faust" / "admin-applier"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.topic_prefix}admin-applier",
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap.split(",")],
        processing_guarantee="at_least_once",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        datadir=str(datadir),
    )
    topic = app.topic(ADMIN.full_name(settings.topic_prefix), key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
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
    worker = faust.Worker(app, loglevel="INFO", quiet=True,
                         logging_config=faust_worker_logging("worker:admin-applier"))
    worker.execute_from_commandline()
