"""Structured JSON logs on stderr: one object per line, with the process's role."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# uvicorn adds "color_message", an ANSI-coloured copy of the message.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "role": self.role,
            "msg": record.getMessage(),
        }
        # Fields passed with extra={...} become top-level keys.
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


#: Meterly's own loggers; METERLY_LOG_LEVEL applies to these (libraries stay at INFO).
OWN = ("gateway", "processors", "storage", "ops")


def own_level() -> str:
    """METERLY_LOG_LEVEL (DEBUG shows each hop of a correlation id's journey)."""
    return os.environ.get("METERLY_LOG_LEVEL", "INFO").upper()


def configure(role: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(role))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in OWN:
        logging.getLogger(name).setLevel(own_level())
    # The Cassandra driver reports every failed reconnect attempt at WARNING.
    logging.getLogger("cassandra").setLevel(logging.ERROR)


def faust_worker_logging(role: str) -> dict[str, Any]:
    """``logging.config.dictConfig`` settings for a Faust worker.

    Faust replaces the process's logging when its worker starts (coloured text, WARNING for
    everything). This keeps the JSON lines, Faust itself at WARNING and Meterly's own
    modules at INFO. Start the worker with ``loglevel="INFO"``: below WARNING Faust turns
    its terminal spinner off, which would otherwise raise the handler's level to WARNING
    and write cursor escape codes into the log.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "role": role}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json",
                              "stream": "ext://sys.stderr"}},
        "root": {"level": "WARNING", "handlers": ["json"]},
        "loggers": {name: {"level": own_level()} for name in OWN}
                   | {"cassandra": {"level": "ERROR"}},
    }
