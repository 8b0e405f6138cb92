"""``meterly demo``: sample plans, tenants and keys, then a minute of traffic.

Everything goes through the public API of a running Meterly (``meterly run``), so the demo
also shows what a first integration looks like. Afterwards usage, upcoming invoices (drafts)
and the key of each tenant are printed, so a first-time user has something to look at.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from ops.output import gateway_url, operator_headers, say

PLANS: list[dict[str, Any]] = [
    {"name": "demo-starter", "currency": "EUR", "flat_fee": "19.00",
     "description": "1,000 calls included, then 0.2 cents a call",
     "prices": {"api.calls": {"model": "per_unit", "unit_price": "0.002", "included": "1000"},
                "storage.gb": {"model": "per_unit", "unit_price": "0.10"}}},
    {"name": "demo-scale", "currency": "EUR", "flat_fee": "99.00", "minimum_spend": "150.00",
     "description": "graduated calls, volume-priced tokens",
     "prices": {
         "api.calls": {"model": "graduated", "included": "5000", "tiers": [
             {"up_to": "100000", "unit_price": "0.001"},
             {"up_to": None, "unit_price": "0.0005"}]},
         "tokens": {"model": "volume", "tiers": [
             {"up_to": "1000000", "unit_price": "0.000004"},
             {"up_to": None, "unit_price": "0.000002"}]}}},
]
TENANTS = [("Acme Analytics", "demo-scale"), ("Globex Search", "demo-starter"),
           ("Initech Docs", "demo-starter")]


def _check(answer: httpx.Response) -> Any:
    if answer.status_code >= 400:
        raise SystemExit(f"meterly demo: {answer.request.method} {answer.request.url.path} "
                         f"answered {answer.status_code}: {answer.text}")
    return answer.json() if answer.content else None


def seed(admin: httpx.Client) -> list[tuple[str, str, str]]:
    """Plans (a new version if they exist), tenants and one key each: (id, name, key)."""
    for spec in PLANS:
        _check(admin.post("/v1/admin/plans", json=spec))
    made = []
    for name, plan in TENANTS:
        tenant = _check(admin.post("/v1/admin/tenants", json={
            "name": name, "billing_email": f"billing@{name.split()[0].lower()}.example",
            "currency": "EUR", "plan": plan, "tax_rate": "19",
            "billing_address": ["1 Example Street", "Dublin"]}))
        key = _check(admin.post(f"/v1/admin/tenants/{tenant['id']}/keys",
                                json={"name": "demo"}))
        made.append((tenant["id"], name, key["key"]))
    return made


def traffic(base: str, tenants: list[tuple[str, str, str]], seconds: float) -> int:
    """Metered calls and CloudEvents batches for ``seconds``; return the events sent."""
    rng = random.Random(7)
    clients = [httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                            timeout=30) for _t, _n, key in tenants]
    sent = 0
    began = last = time.monotonic()
    try:
        while time.monotonic() - began < seconds:
            for index, client in enumerate(clients):
                # Busier tenants first: usage differs visibly between them.
                for _ in range(3 - index):
                    _check(client.get("/v1/resources/api.calls"))
                    sent += 1
                now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                batch = [{"specversion": "1.0", "id": uuid.uuid4().hex, "source": "demo",
                          "type": rng.choice(["api.calls", "tokens", "storage.gb"]),
                          "time": now, "data": {"quantity": rng.choice([1, 10, 250, 1200])}}
                         for _ in range(50)]
                _check(client.post("/v1/events", json=batch))
                sent += len(batch)
            if time.monotonic() - last > 5:
                say(f"{sent:,} events sent, {seconds - (time.monotonic() - began):.0f} s left")
                last = time.monotonic()
            time.sleep(0.2)
    finally:
        for client in clients:
            client.close()
    return sent


def cmd_demo(args: argparse.Namespace) -> int:
    base, headers = gateway_url(args.url), operator_headers()
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as admin:
            tenants = seed(admin)
            say(f"created {len(PLANS)} plans and {len(tenants)} tenants with a key each")
            sent = traffic(base, tenants, args.seconds)
            say(f"sent {sent:,} events; waiting for the counters")
            time.sleep(2)
            for tenant_id, name, key in tenants:
                upcoming = httpx.get(f"{base}/v1/invoices/upcoming", timeout=30,
                                     headers={"Authorization": f"Bearer {key}"}).json()
                total = upcoming.get("total", {})
                print(f"{name}\t{tenant_id}\tkey {key}\tupcoming invoice "
                      f"{total.get('amount', '?')} {total.get('currency', '')}")
    except httpx.TransportError as exc:
        say(f"cannot reach Meterly at {base} ({exc}); start it with `meterly run`")
        return 1
    return 0


def add_parser(sub: Any) -> None:
    demo = sub.add_parser("demo", help="sample plans, tenants and keys, and a minute of traffic")
    demo.add_argument("--seconds", type=float, default=60.0)
    demo.add_argument("--url", help="gateway URL (default: METERLY_PUBLIC_URL or host:port)")
    demo.set_defaults(func=cmd_demo)
