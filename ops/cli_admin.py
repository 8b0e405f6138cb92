"""Operator commands: tenants, keys, the webhook dead-letter topic, the usage mirror, benches.

Tenants, keys and dead letters go through the gateway's operator API (the same validation
and admin-topic path as the console); ``mirror rebuild`` reads Kafka and writes Cassandra
directly; ``bench`` runs a script of ``ops/bench``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from ops.output import gateway_url, operator_headers, problem_detail, say
from ops.provision import resolve_infra, use_env
from processors.runtime.settings import get_settings


def _api(args: argparse.Namespace, method: str, path: str,
         body: dict[str, Any] | None = None) -> Any:
    """Call the operator API; print the problem and exit 1 on an error answer."""
    base = gateway_url(args.url)
    try:
        answer = httpx.request(method, f"{base}{path}", json=body, headers=operator_headers(),
                               timeout=60)
    except httpx.TransportError as exc:
        say(f"cannot reach the gateway at {base} ({exc}); is `meterly run` running?")
        raise SystemExit(1) from None
    if answer.status_code >= 400:
        say(f"error {answer.status_code}: {problem_detail(answer)}")
        raise SystemExit(1)
    return answer.json() if answer.content else None


def _print(doc: Any) -> None:
    print(json.dumps(doc, indent=2))


def cmd_tenants(args: argparse.Namespace) -> int:
    if args.action == "list":
        cursor = None
        while True:
            page = _api(args, "GET", "/v1/admin/tenants?limit=500" +
                        (f"&cursor={cursor}" if cursor else ""))
            for t in page["data"]:
                print(f"{t['id']}\t{t['status']}\t{t['currency']}\t{t['plan'] or '-'}\t"
                      f"{t['name']}")
            cursor = page["next_cursor"]
            if not cursor:
                return 0
    body = {"name": args.name, "billing_email": args.email, "currency": args.currency}
    if args.plan:
        body["plan"] = args.plan
    _print(_api(args, "POST", "/v1/admin/tenants", body))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    if args.action == "create":
        made = _api(args, "POST", f"/v1/admin/tenants/{args.tenant}/keys", {"name": args.name})
        say("the raw key is shown once: store it now")
        _print(made)
    elif args.action == "list":
        for k in _api(args, "GET", f"/v1/admin/tenants/{args.tenant}/keys"):
            state = "revoked" if k["revoked_at"] else "active"
            print(f"{k['id']}\t{k['prefix']}...\t{state}\t{k['name']}")
    else:
        _print(_api(args, "POST", f"/v1/admin/tenants/{args.tenant}/keys/{args.key}/revoke"))
    return 0


def cmd_dead_letter(args: argparse.Namespace) -> int:
    if not args.replay:
        for d in _api(args, "GET", "/v1/admin/webhooks/dead-letter?limit=1000"):
            print(f"{d['message_id']}\t{d['event_type']}\t{d['tenant_id']}\t"
                  f"{d['endpoint_id']}\t{d['attempts']}\t{d['last_error']}")
        return 0
    body = {"tenant_id": args.tenant, "endpoint_id": args.endpoint, "event_type": args.type}
    done = _api(args, "POST", "/v1/admin/webhooks/dead-letter/replay", body)
    say(f"replayed {done['replayed']} deliveries")
    return 0


def cmd_meters(args: argparse.Namespace) -> int:
    if args.action == "list":
        for m in _api(args, "GET", "/v1/admin/meters"):
            dims = ",".join([*m["group_by"], *([m["value_dimension"]]
                                               if m.get("value_dimension") else [])])
            print(f"{m['key']}\tv{m['version']}\t{m['event_type']}\t{m['aggregation']}\t"
                  f"{dims or '-'}")
        return 0
    if args.action == "show":
        _print(_api(args, "GET", f"/v1/admin/meters/{args.target}"))
        return 0
    text = sys.stdin.read() if args.target == "-" else Path(args.target).read_text()
    definition = json.loads(text)
    made = _api(args, "POST", "/v1/admin/meters", definition)
    say(f"meter {made['key']} version {made['version']}")
    _print(made)
    return 0


def cmd_invalid_records(args: argparse.Namespace) -> int:
    query = "?limit=1000" + (f"&topic={args.topic}" if args.topic else "")
    rows = _api(args, "GET", f"/v1/admin/invalid-records{query}")
    for r in rows:
        print(f"{r['dead_lettered_at']}\t{r['source']}\t{','.join(r['readers'])}\t"
              f"{r['size']} bytes\t{r['reason']}")
    if not rows:
        say("no unreadable records")
    return 0


def cmd_ingest_credentials(args: argparse.Namespace) -> int:
    if args.revoke:
        done = _api(args, "POST", f"/v1/admin/ingest/credentials/{args.revoke}/revoke")
        say(f"revoked {args.revoke}: principal {done['principal'] or '-'} removed, key "
            f"{done['key']['prefix']}... revoked")
        return 0
    if args.list or not args.tenant:
        if not args.list:
            say("give --tenant (and --name) to issue credentials, or --list")
            return 2
        for c in _api(args, "GET", "/v1/admin/ingest/credentials"):
            state = "revoked" if c["key"]["revoked_at"] else "active"
            print(f"{c['name']}\t{c['tenant_id']}\t{c['principal'] or '-'}\t"
                  f"{c['key']['prefix']}...\t{state}")
        return 0
    name = args.name or args.tenant.lower().replace("_", "-")
    made = _api(args, "POST", "/v1/admin/ingest/credentials",
                {"tenant_id": args.tenant, "name": name})
    if made.get("note"):
        say(made["note"])
    # What a producer needs, in one document: its librdkafka settings, the topic, and the
    # header every record carries. Shown once: keep it as a secret (mode 0600).
    _print({"kafka": made["kafka"], "topic": made["topic"],
            "headers": {made["header"]: made["key"]["key"]},
            "tenant_id": made["tenant_id"], "principal": made["principal"]})
    return 0


def cmd_ingest_dead_letter(args: argparse.Namespace) -> int:
    if not args.replay:
        query = "?limit=1000" + (f"&tenant_id={args.tenant}" if args.tenant else "")
        for d in _api(args, "GET", f"/v1/admin/ingest/dead-letter{query}"):
            print(f"{d['place']}\t{d['tenant_id']}\t{d['event_id'] or '-'}\t{d['reason']}")
        return 0
    body = {"tenant_id": args.tenant, "reason_contains": args.reason}
    done = _api(args, "POST", "/v1/admin/ingest/dead-letter/replay", body)
    say(f"replayed {done['replayed']} records to the ingest topic")
    return 0


def cmd_mirror_rebuild(_args: argparse.Namespace) -> int:
    from processors.usage.mirror_rebuild import rebuild_mirror

    settings = get_settings()
    infra = resolve_infra(settings)
    # What was provisioned here takes Meterly's credentials (clients read them from the
    # process's settings).
    settings = use_env(infra.env)
    scoped = settings.model_copy(update={"kafka_bootstrap": infra.kafka_bootstrap,
                                         "cassandra_hosts": infra.cassandra_hosts})
    rebuild_mirror(scoped, say)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    scripts = sorted(p.stem for p in (Path(__file__).parent / "bench").glob("*.py")
                     if p.stem not in ("__init__", "common"))
    if args.name not in scripts:
        say(f"unknown benchmark {args.name!r}; known: {', '.join(scripts)}")
        return 2
    return subprocess.call([sys.executable, "-m", f"ops.bench.{args.name}", *args.rest])


def add_parsers(sub: Any) -> None:
    def with_url(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--url", help="gateway URL (default: METERLY_PUBLIC_URL)")
        return parser

    tenants = sub.add_parser("tenants", help="list or create tenants")
    t_actions = tenants.add_subparsers(dest="action", required=True)
    with_url(t_actions.add_parser("list")).set_defaults(func=cmd_tenants)
    create = with_url(t_actions.add_parser("create"))
    create.add_argument("name")
    create.add_argument("--email", required=True)
    create.add_argument("--currency", default="EUR")
    create.add_argument("--plan")
    create.set_defaults(func=cmd_tenants)

    keys = sub.add_parser("keys", help="a tenant's API keys: list, create, revoke")
    k_actions = keys.add_subparsers(dest="action", required=True)
    k_list = with_url(k_actions.add_parser("list"))
    k_list.add_argument("tenant")
    k_list.set_defaults(func=cmd_keys)
    k_create = with_url(k_actions.add_parser("create"))
    k_create.add_argument("tenant")
    k_create.add_argument("--name", default="default")
    k_create.set_defaults(func=cmd_keys)
    k_revoke = with_url(k_actions.add_parser("revoke"))
    k_revoke.add_argument("tenant")
    k_revoke.add_argument("key")
    k_revoke.set_defaults(func=cmd_keys)

    webhooks = sub.add_parser("webhooks", help="the webhook dead-letter topic")
    w_actions = webhooks.add_subparsers(dest="action", required=True)
    dead = with_url(w_actions.add_parser("dead-letter", help="list, or --replay"))
    dead.add_argument("--replay", action="store_true")
    dead.add_argument("--tenant")
    dead.add_argument("--endpoint")
    dead.add_argument("--type")
    dead.set_defaults(func=cmd_dead_letter)

    ingest = sub.add_parser("ingest", help="Kafka ingest: producer credentials, dead letters")
    i_actions = ingest.add_subparsers(dest="action", required=True)
    i_cred = with_url(i_actions.add_parser(
        "credentials", help="issue a producer's credentials for one tenant (printed once, as "
                            "JSON), --list them, or --revoke NAME"))
    i_cred.add_argument("--tenant", help="the tenant whose usage the producer sends")
    i_cred.add_argument("--name", help="names the producer (default: from the tenant id)")
    i_cred.add_argument("--list", action="store_true")
    i_cred.add_argument("--revoke", metavar="NAME")
    i_cred.set_defaults(func=cmd_ingest_credentials)
    i_dead = with_url(i_actions.add_parser(
        "dead-letter", help="list refused ingest records, or --replay them"))
    i_dead.add_argument("--replay", action="store_true",
                        help="write them back to the ingest topic to be judged again")
    i_dead.add_argument("--tenant")
    i_dead.add_argument("--reason", help="only records whose reason contains this text")
    i_dead.set_defaults(func=cmd_ingest_dead_letter)

    meters = with_url(sub.add_parser(
        "meters", help="meter definitions: list, show KEY, create FILE (JSON; - for stdin)"))
    meters.add_argument("action", choices=["list", "show", "create"])
    meters.add_argument("target", nargs="?", default="-",
                        help="the meter key (show) or the definition file (create)")
    meters.set_defaults(func=cmd_meters)

    invalid = with_url(sub.add_parser(
        "invalid-records", help="records a worker could not decode, set aside unchanged"))
    invalid.add_argument("--topic", help="one topic, without the prefix (usage.v1, admin.v1)")
    invalid.set_defaults(func=cmd_invalid_records)

    mirror = sub.add_parser("mirror", help="the Cassandra usage mirror")
    m_actions = mirror.add_subparsers(dest="action", required=True)
    m_actions.add_parser("rebuild", help="rewrite usage_by_period from the counter changelog"
                         ).set_defaults(func=cmd_mirror_rebuild)

    bench = sub.add_parser("bench", help="run a benchmark of ops/bench (figures are printed)")
    bench.add_argument("name")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)
