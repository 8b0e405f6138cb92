"""What the benchmark scripts share: a free port, a started gateway, a tenant with a key."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{base} did not answer /healthz within {timeout:.0f}s")


def tenant_key(base: str, operator_token: str, name: str) -> str:
    """Create a tenant and an API key through the operator API; return the raw key."""
    admin = {"Authorization": f"Bearer {operator_token}"}
    tenant = httpx.post(f"{base}/v1/admin/tenants", headers=admin, json={
        "name": name, "billing_email": f"{name}@example.com", "currency": "USD"}).json()
    key: str = httpx.post(f"{base}/v1/admin/tenants/{tenant['id']}/keys", headers=admin,
                          json={"name": name}).json()["key"]
    return key


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def jvm_pids() -> dict[str, int]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        for name, marker in (("kafka", b"kafka.Kafka"), ("cassandra", b"CassandraDaemon")):
            if marker in cmdline and b"java" in cmdline:
                found[name] = int(entry.name)
    return found
