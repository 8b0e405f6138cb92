"""The worker processes ``meterly run`` supervises, by name (``meterly worker NAME``)."""

from __future__ import annotations

from importlib import import_module

from processors.runtime.settings import Settings

#: Worker name -> the module whose ``run_worker(settings)`` runs it until SIGTERM. Imported
#: only when started, so one worker's process loads none of the others' dependencies.
WORKERS: dict[str, str] = {
    "counter": "processors.usage.counter",
    "mirror": "processors.usage.mirror",
    "ingest-validator": "processors.usage.ingest_validator",
    "billing": "processors.billing.close_worker",
    "invoice-renderer": "processors.billing.renderer",
    "webhook-dispatcher": "processors.webhooks.dispatcher",
}


def run_worker(name: str, settings: Settings) -> None:
    import_module(WORKERS[name]).run_worker(settings)
