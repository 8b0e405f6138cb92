"""The worker processes ``meterly run`` supervises, by name (``meterly worker NAME``)."""

from __future__ import annotations

from importlib import import_module

from ops.settings import Settings

#: Worker name -> the module whose ``run_worker(settings)`` runs it until SIGTERM. Imported
#: only when started, so one worker's process loads none of the others' dependencies.
WORKERS: dict[str, str] = {
    "counter": "processors.usage_counter",
    "mirror": "processors.usage_mirror",
    "ingest-validator": "processors.ingest_validator",
    "admin-applier": "processors.admin_applier",
    "billing": "processors.billing",
    "invoice-renderer": "processors.invoice_renderer",
    "webhook-dispatcher": "processors.webhook_dispatcher",
}


def run_worker(name: str, settings: Settings) -> None:
    import_module(WORKERS[name]).run_worker(settings)
