"""What the benchmark scripts share: a free port, a started gateway, a tenant with a key."""

from __future__ import annotations

import socket
import time

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
