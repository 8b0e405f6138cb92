"""``meterly billing close``: close a period on demand through the gateway's operator API.

The command line goes through the API rather than writing to Kafka itself, so it follows
the same validation, the same audit path and the same idempotent close as the console.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx

from ops.output import gateway_url, operator_headers, problem_detail, say


def cmd_billing_close(args: argparse.Namespace) -> int:
    base, headers = gateway_url(args.url), operator_headers()
    body: dict[str, Any] = {"period": args.period}
    if args.tenant:
        body["tenant_ids"] = args.tenant
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        answer = client.post("/v1/admin/billing/close", json=body)
        if answer.status_code != 202:
            say(f"error {answer.status_code}: {problem_detail(answer)}")
            return 1
        invoices: dict[str, str] = answer.json()["invoices"]
        say(f"closing {args.period} for {len(invoices)} tenant(s)")
        if not args.wait:
            for tenant, invoice in sorted(invoices.items()):
                print(f"{tenant}\t{invoice}")
            return 0
        return _wait(client, invoices, args.timeout)


def _wait(client: httpx.Client, invoices: dict[str, str], timeout: float) -> int:
    """Until every invoice is finalized and its PDF stored (so it can be downloaded)."""
    pending = dict(invoices)
    finalized: set[str] = set()
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while pending and time.monotonic() < deadline:
        for tenant, invoice in list(pending.items()):
            answer = client.get(f"/v1/admin/tenants/{tenant}/invoices/{invoice}")
            if answer.status_code == 200 and answer.json()["status"] != "draft":
                finalized.add(tenant)
                if answer.json().get("pdf_url"):
                    done[tenant] = answer.json()
                    del pending[tenant]
        if time.monotonic() - last_report > 2 or not pending:
            say(f"finalized {len(finalized)}/{len(invoices)}, "
                 f"PDFs stored {len(done)}/{len(invoices)}")
            last_report = time.monotonic()
        if pending:
            time.sleep(0.5)
    for tenant, inv in sorted(done.items()):
        total = inv["total"]
        print(f"{tenant}\t{inv['id']}\t{inv['number']}\t{total['amount']} {total['currency']}")
    if pending:
        # A tenant without a plan in force during the period gets no invoice.
        say(f"no finalized invoice with its PDF after {timeout:.0f}s for: "
             f"{', '.join(sorted(pending))} (a tenant without a plan in the period is not "
             "invoiced)")
        return 2
    return 0


def cmd_billing_status(args: argparse.Namespace) -> int:
    """The close barrier as the billing workers report it."""
    base, headers = gateway_url(args.url), operator_headers()
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        answer = client.get("/v1/admin/billing/status")
    if answer.status_code != 200:
        say(f"error {answer.status_code}: {problem_detail(answer)}")
        return 1
    status = answer.json()
    print(f"usage complete through\t{status['complete_through'] or 'not proven yet'}")
    print(f"closes waiting\t{status['closes_waiting']}")
    if not status["workers"]:
        print("no billing worker has reported in the last two minutes")
        return 2
    for w in status["workers"]:
        if w["stage"] in ("ingest-validator", "counter", "mirror") and w["records_behind"]:
            waits = (f"waiting for the {w['stage']} ({w['records_behind']} records behind) "
                     f"since {w['waiting_since']}")
        else:
            waits = "caught up"
        print(f"{w['worker']}\t{w['complete_through'] or '-'}\t{waits}"
              f"\t{w['closes_waiting']} closes held")
    return 0


def add_parser(sub: Any) -> None:
    billing = sub.add_parser("billing", help="billing operations (close a period; the "
                             "close barrier's status)")
    actions = billing.add_subparsers(dest="action", required=True)
    close = actions.add_parser("close", help="close a period now (idempotent)")
    close.add_argument("period", help="YYYY-MM (UTC)")
    close.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    close.add_argument("--url", help="gateway URL (default: METERLY_PUBLIC_URL or host:port)")
    close.add_argument("--wait", action="store_true",
                       help="wait until the invoices are finalized and their PDFs stored; "
                            "print them")
    close.add_argument("--timeout", type=float, default=300.0)
    close.set_defaults(func=cmd_billing_close)
    status = actions.add_parser(
        "status", help="the close barrier: until when usage is complete, what a held close "
        "waits for")
    status.add_argument("--url", help="gateway URL (default: METERLY_PUBLIC_URL or host:port)")
    status.set_defaults(func=cmd_billing_status)
