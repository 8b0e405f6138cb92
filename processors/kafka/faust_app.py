"""What every Meterly Faust app shares: at-least-once, raw bytes topics, JSON logs.

Faust is used where outputs are idempotent by id (admin tables, period close, PDF rendering),
so its at-least-once processing is exact; records are bytes and each worker decodes its own
schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust

from processors.kafka.config import faust_credentials
from processors.kafka.invalid import DeadLetter, DeadLetters
from processors.runtime.logs import faust_worker_logging
from processors.runtime.settings import Settings


def faust_app(settings: Settings, name: str, leader: bool = False, **extra: Any) -> faust.App:
    """A Faust app for worker ``name``; ``leader`` keeps Faust's leader election (timers
    that must run on one worker only need it)."""
    assert settings.kafka_bootstrap
    datadir = settings.home / "faust" / name
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        f"{settings.topic_prefix}{name}",
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap.split(",")],
        processing_guarantee="at_least_once",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=not leader,
        consumer_auto_offset_reset="earliest",
        datadir=str(datadir),
        broker_credentials=faust_credentials(settings),
        **extra,
    )


def bytes_topic(app: faust.App, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw")


def header_cid(event: Any) -> str | None:
    """The ``correlation-id`` header of a Faust event, if it has one."""
    value = dict(event.headers or {}).get("correlation-id")
    return value.decode() if isinstance(value, bytes) else value


def event_place(event: Any) -> str:
    """Where a Faust event's record is: topic/partition/offset."""
    message = event.message
    return f"{message.topic}/{message.partition}/{message.offset}"


def dead_letter_of(letters: DeadLetters, event: Any) -> DeadLetter:
    """The dead-lettering of a Faust event's record, unchanged."""
    message = event.message
    headers = message.headers
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    return letters.of_record(event_place(event), message.key, message.value, headers)


def run_app(app: faust.App, name: str) -> None:
    """Run ``app`` until SIGTERM, logging JSON lines like every other Meterly process."""
    worker = faust.Worker(app, loglevel="INFO", quiet=True,
                          logging_config=faust_worker_logging(f"worker:{name}"))
    worker.execute_from_commandline()
