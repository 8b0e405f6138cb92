"""The worker processes ``meterly run`` supervises, by name (``meterly worker NAME``)."""

from __future__ import annotations

from collections.abc import Callable

from ops.settings import Settings


def _counter(settings: Settings) -> None:
    from processors.usage_counter import run_worker

    run_worker(settings)


def _mirror(settings: Settings) -> None:
    from processors.usage_mirror import run_worker

    run_worker(settings)


def _ingest_validator(settings: Settings) -> None:
    from processors.ingest_validator import run_worker

    run_worker(settings)


def _admin_applier(settings: Settings) -> None:
    from processors.admin_applier import run_worker

    run_worker(settings)


#: Worker name -> function that runs the worker until it is stopped (SIGTERM).
WORKERS: dict[str, Callable[[Settings], None]] = {
    "counter": _counter,
    "mirror": _mirror,
    "ingest-validator": _ingest_validator,
    "admin-applier": _admin_applier,
}
