"""Each process imports only what it runs: a worker never loads the HTTP shell, and the
gateway never registers a worker's metrics."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ops.workers import WORKERS

#: What no worker process may load: the gateway, its web framework, the CLI.
NOT_IN_A_WORKER = ("gateway", "fastapi", "starlette", "jinja2", "uvicorn", "ops.cli")


def loaded_after(module: str) -> set[str]:
    """The modules a fresh interpreter holds after importing ``module``."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    return set(done.stdout.split())


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_a_worker_loads_no_http_shell(name: str) -> None:
    loaded = loaded_after(WORKERS[name])
    leaked = sorted(m for m in loaded
                    if any(m == n or m.startswith(f"{n}.") for n in NOT_IN_A_WORKER))
    assert not leaked, f"{name} ({WORKERS[name]}) loads {leaked}"


def test_the_gateway_registers_no_worker_metrics() -> None:
    code = ("import gateway.app; from prometheus_client import REGISTRY; "
            "print('\\n'.join(m.name for m in REGISTRY.collect()))")
    names = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True, timeout=120).stdout.split())
    gateway = {n for n in names if n.startswith("meterly_")}
    # Its own, and the invalid-records counter of the admin directory it follows.
    assert gateway == {"meterly_http_problems", "meterly_ingest_events",
                       "meterly_ingest_rejections", "meterly_invalid_records"}, gateway
