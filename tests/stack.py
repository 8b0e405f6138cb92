"""A running Meterly for end-to-end tests: gateway processes and workers as real processes."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ops.topics import ensure_topics
from processors.runtime.settings import Settings
from tests.usage_load import WorkerProcess, worker_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    settings: Settings
    admin_token: str
    gateways: list[Gateway]
    workers: list[WorkerProcess] = field(default_factory=list)
    #: Worker name -> its Prometheus port (with ``start_stack(metrics=True)``).
    metrics: dict[str, int] = field(default_factory=dict)
    #: The environment every process of the stack was started with.
    env: dict[str, str] = field(default_factory=dict)

    def kill_gateway(self, index: int) -> None:
        """SIGKILL one gateway process; assert it died of it (it was alive)."""
        gw = self.gateways[index]
        assert gw.proc.poll() is None, "the gateway was not running"
        gw.proc.send_signal(signal.SIGKILL)
        assert gw.proc.wait(10) == -signal.SIGKILL

    def start_gateway(self, index: int, extra_env: dict[str, str] | None = None,
                      wait: bool = True) -> None:
        """Start gateway ``index`` again on its port (``extra_env`` for this launch, e.g.
        ``METERLY_FAILPOINTS``); return once it answers, or at once with ``wait=False`` (a
        gateway armed with a failpoint may die before the health check gets its turn)."""
        gw = self.gateways[index]
        gw.proc = _launch_gateway({**self.env, **(extra_env or {})}, gw.port, gw.log)
        if wait:
            _wait_healthy(self, gw)

    def client(self, index: int = 0, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.gateways[index].url, headers=headers, timeout=30)

    def new_tenant(self, name: str = "Acme", **extra: Any) -> tuple[str, str]:
        """Create a tenant and a key through the operator API; return (tenant id, raw key)."""
        with self.client() as admin:
            made = admin.post("/v1/admin/tenants", json={
                "name": name, "billing_email": "billing@example.com", "currency": "EUR",
                **extra})
            assert made.status_code == 201, made.text
            tenant_id = made.json()["id"]
            key = admin.post(f"/v1/admin/tenants/{tenant_id}/keys", json={"name": "default"})
            assert key.status_code == 201, key.text
            return tenant_id, key.json()["key"]

    def close_now(self, tenant: str, period: str) -> None:
        """Ask for ``tenant``'s ``period`` to be closed now (the operator API)."""
        with self.client() as admin:
            asked = admin.post("/v1/admin/billing/close",
                               json={"period": period, "tenant_ids": [tenant]})
        assert asked.status_code == 202, asked.text

    def finalized_invoice(self, tenant: str, period: str,
                          timeout: float = 120.0) -> dict[str, Any]:
        """Wait for ``tenant``'s finalized invoice of ``period`` with its PDF rendered."""
        def found() -> dict[str, Any] | None:
            with self.client() as admin:
                docs = admin.get(f"/v1/admin/tenants/{tenant}/invoices").json()
            return next((d for d in docs if d["period"] == period
                         and d["status"] == "finalized" and d["pdf_url"]), None)

        invoice: dict[str, Any] = wait_until(
            f"{tenant}'s invoice of {period}, finalized and rendered", found, timeout=timeout)
        return invoice

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for gw in self.gateways:
            gw.proc.terminate()
        for gw in self.gateways:
            try:
                gw.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                gw.proc.kill()
        for w in self.workers:
            w.stop()


CORE_WORKERS = ("counter", "mirror", "ingest-validator")
BILLING_WORKERS = ("billing", "invoice-renderer")
ALL_WORKERS = (*CORE_WORKERS, *BILLING_WORKERS, "webhook-dispatcher")


def start_stack(settings: Settings, tmp: Path, gateways: int = 2,
                extra_env: dict[str, str] | None = None,
                workers: tuple[str, ...] = CORE_WORKERS, metrics: bool = False) -> Stack:
    prefix = f"{settings.topic_prefix}s{secrets.token_hex(3)}."
    scoped = settings.model_copy(update={"topic_prefix": prefix})
    assert scoped.kafka_bootstrap
    ensure_topics(scoped.kafka_bootstrap, prefix, 1)
    token = "mop_test_" + secrets.token_hex(16)
    env = {**worker_env(scoped, tmp / "home", "1"), "METERLY_ADMIN_TOKEN": token,
           **(extra_env or {})}
    stack = Stack(scoped, token, [], env=env)
    for name in workers:
        own_env = env
        if metrics:
            stack.metrics[name] = free_port()
            own_env = {**env, "METERLY_METRICS_PORT": str(stack.metrics[name])}
        worker = WorkerProcess(name, own_env, tmp / f"{name}.log")
        worker.start()
        stack.workers.append(worker)
    for i in range(gateways):
        port = free_port()
        log = tmp / f"gateway-{i}.log"
        stack.gateways.append(Gateway(port, _launch_gateway(env, port, log), log))
    for gw in stack.gateways:
        _wait_healthy(stack, gw)
    return stack


def _launch_gateway(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ops.cli", "gateway"],
                            env={**env, "METERLY_PORT": str(port)},
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _wait_healthy(stack: Stack, gw: Gateway, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{gw.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if gw.proc.poll() is not None or time.monotonic() > deadline:
            stack.stop()
            raise RuntimeError(f"gateway did not start:\n{gw.log.read_text()[-3000:]}")
        time.sleep(0.2)


def wait_for_usage(stack: Stack, key: str, expected: dict[str, tuple[int, str]],
                   timeout: float = 30.0) -> dict[str, tuple[int, str]]:
    """Poll the usage API until it shows ``expected`` ({meter: (count, sum)})."""
    deadline = time.monotonic() + timeout
    seen: dict[str, tuple[int, str]] = {}
    with stack.client(token=key) as client:
        while time.monotonic() < deadline:
            body = client.get("/v1/usage").json()
            seen = {m["meter"]: (m["count"], m["sum"]) for m in body["meters"]}
            if seen == expected:
                return seen
            time.sleep(0.3)
    raise AssertionError(f"usage never became {expected}; last seen {seen}")


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 90.0,
               every: float = 0.25) -> Any:
    """Poll ``probe`` until it returns something truthy; return that, or fail naming ``what``
    and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def env_without_meterly() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("METERLY_")}


def rss(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes (``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")
