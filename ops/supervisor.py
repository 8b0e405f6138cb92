"""Run the gateway and every worker as child processes; restart any that dies.

A child that exits is restarted after a back-off that doubles on every quick death (1 s up
to 30 s) and resets once it has stayed up for a minute, so a crash loop neither spins the
CPU nor delays recovery from a one-off crash. SIGINT or SIGTERM stops every child: SIGTERM
first, SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from ops.provision import Infra
from ops.workers import WORKERS
from processors.runtime.settings import Settings

log = logging.getLogger(__name__)

MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Child:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = MIN_BACKOFF
    restart_at: float | None = None


def next_backoff(current: float, uptime: float) -> float:
    """The delay before the next restart, given the last delay and how long the child ran."""
    if uptime >= STABLE_AFTER:
        return MIN_BACKOFF
    return min(MAX_BACKOFF, current * 2)


class Supervisor:
    def __init__(self, specs: list[ProcessSpec], grace: float = 15.0) -> None:
        self._children = [_Child(spec) for spec in specs]
        self._grace = grace
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def restarts(self) -> dict[str, int]:
        return {c.spec.name: c.restarts for c in self._children}

    def pids(self) -> dict[str, int | None]:
        return {c.spec.name: c.proc.pid if c.proc else None for c in self._children}

    def _launch(self, child: _Child) -> None:
        child.proc = subprocess.Popen(
            child.spec.argv,
            env={**os.environ, **child.spec.env},
            stdin=subprocess.DEVNULL,
            # Own process group: the terminal's Ctrl-C reaches only the supervisor, which
            # then stops children in an orderly way.
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info("started %s", child.spec.name, extra={"child": child.spec.name,
                                                        "pid": child.proc.pid})

    def run(self, install_signal_handlers: bool = True) -> None:
        if install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda _s, _f: self._stop.set())
        for child in self._children:
            self._launch(child)
        try:
            while not self._stop.wait(0.2):
                self._tick()
        finally:
            self._shutdown()

    def _tick(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self._launch(child)
                continue
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                continue
            uptime = now - child.started_at
            child.backoff = next_backoff(child.backoff, uptime) if child.restarts else MIN_BACKOFF
            child.restart_at = now + child.backoff
            log.warning(
                "%s exited with status %s after %.1fs; restarting in %.0fs",
                child.spec.name, code, uptime, child.backoff,
                extra={"child": child.spec.name, "exit_status": code,
                       "restart_number": child.restarts + 1},
            )

    def _shutdown(self) -> None:
        live = [c.proc for c in self._children if c.proc is not None and c.proc.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._grace
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process %s ignored SIGTERM; killing it", proc.pid)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.info("all processes stopped")


def supervised_processes(settings: Settings, infra: Infra) -> list[ProcessSpec]:
    """The gateway and every worker of ``ops.workers``, as ``meterly run`` starts them."""
    env = {
        **infra.env,
        "METERLY_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "METERLY_CASSANDRA_HOSTS": infra.cassandra_hosts,
        "METERLY_HOME": str(settings.home),
    }
    specs = [ProcessSpec("gateway", [sys.executable, "-m", "ops.cli", "gateway"], env)]
    for name in WORKERS:
        # Counting workers get stable ids: each id is a transactional id and a static
        # group member, so a restarted worker fences its predecessor at once.
        count = {"counter": settings.counter_workers,
                 "invoice-renderer": settings.renderer_workers,
                 "webhook-dispatcher": settings.webhook_workers}.get(name, 1)
        ids = [str(i) for i in range(1, count + 1)]
        for i in ids:
            worker_env = {**env, "METERLY_WORKER_ID": i}
            if settings.metrics_port:
                # One Prometheus port per worker, counted up from METERLY_METRICS_PORT.
                worker_env["METERLY_METRICS_PORT"] = str(settings.metrics_port + len(specs))
            specs.append(ProcessSpec(f"worker:{name}:{i}",
                                     [sys.executable, "-m", "ops.cli", "worker", name],
                                     worker_env))
    return specs
