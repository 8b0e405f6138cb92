"""The ``meterly`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence

from ops.infra.artifacts import ProvisioningError
from ops.infra.stack import ALL_COMPONENTS, COMPONENTS, Component
from ops.output import say
from ops.provision import local_stack, prepare, resolve_infra, use_env
from processors.runtime.settings import get_settings

log = logging.getLogger("meterly")


def cmd_infra(args: argparse.Namespace) -> int:
    settings = get_settings()
    stack = local_stack(settings, "cluster" if args.cluster else "single")
    components: tuple[Component, ...] = (args.only,) if args.only else COMPONENTS
    if args.action == "env":
        # Shell syntax, for `eval "$(meterly infra env)"` before `meterly worker NAME` or a
        # benchmark run by hand: addresses and Meterly's credentials (0600 in the file).
        for name, value in stack.client_env(components).items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    if args.action == "up":
        stack.up(components)
        if args.only != "s3":
            say(f"Kafka at {stack.kafka_bootstrap} (SASL/SCRAM; over TLS at "
                f"{stack.kafka_tls_bootstrap}), Cassandra at {stack.cassandra_hosts} "
                f"(password authentication); Meterly's credentials are in "
                f"{stack.credentials_file}, `meterly infra env` prints them as settings")
        else:
            keys = stack.s3_credentials()
            say(f"S3Proxy at {stack.s3_endpoint}, access key {keys.access_key} "
                 f"(both keys in {stack.s3_credentials_file})")
        say(f"logs in {stack.logs}")
    elif args.action == "down":
        # Without --only, down also stops an S3Proxy started with `up --only s3`.
        stopped = stack.down((args.only,) if args.only else ALL_COMPONENTS)
        say(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    else:
        rows = stack.status()
        if not rows:
            say("nothing provisioned yet (run `meterly infra up`)")
        for row in rows:
            state = "healthy" if row.healthy else ("starting/unhealthy" if row.pid else "stopped")
            memory = f"{row.resident_bytes / 2**20:.0f} MiB" if row.pid else "-"
            pid = row.pid or "-"
            print(f"{row.name:<12} {state:<18} pid={pid:<8} {row.endpoint:<16} rss={memory}")
        return 0 if rows and all(r.healthy for r in rows) else 3
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ops.supervisor import Supervisor, supervised_processes
    from processors.runtime import logs

    if args.port:
        os.environ["METERLY_PORT"] = str(args.port)
        get_settings.cache_clear()
    settings = get_settings()
    logs.configure("supervisor")
    from processors.runtime.operator_token import ensure_admin_token, token_file

    token, generated = ensure_admin_token(settings)
    if generated:
        say(f"operator token (shown once, kept in {token_file(settings)}): {token}")
    infra = resolve_infra(settings)
    try:
        # The provisioned Kafka and Cassandra take Meterly's credentials: this process and
        # every child it starts read them from the environment.
        settings = use_env(infra.env)
        prepare(settings, infra.kafka_bootstrap, infra.cassandra_hosts)
        supervisor = Supervisor(supervised_processes(settings, infra))
        say(f"serving http://localhost:{settings.port} (Ctrl-C stops everything)")
        supervisor.run()
    finally:
        if infra.started:
            say(f"stopping {', '.join(infra.started)}")
            infra.stack.down()
    say("stopped")
    return 0


def cmd_gateway(_args: argparse.Namespace) -> int:
    import uvicorn

    from processors.runtime import logs

    settings = get_settings()
    logs.configure("gateway")
    processes = settings.gateway_processes
    # Several processes share the port (uvicorn's supervisor); each keeps its own state.
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=processes if processes > 1 else None,
        loop="uvloop",
        # httptools with deadlines for slow headers and bodies (slowloris).
        http="gateway.server:DeadlineHttpToolsProtocol",
        limit_concurrency=settings.max_connections,
        log_config=None,
        access_log=False,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from ops.workers import WORKERS, run_worker
    from processors.runtime import logs

    if args.name not in WORKERS:
        say(f"unknown worker {args.name!r}; known: {', '.join(sorted(WORKERS)) or 'none'}")
        return 2
    settings = get_settings()
    logs.configure(f"worker:{args.name}")
    if settings.metrics_port:
        from prometheus_client import start_http_server

        # Prometheus scrapes each worker here (mirror lag, among others).
        start_http_server(settings.metrics_port, addr=settings.host)
    run_worker(args.name, settings)
    return 0


def cmd_prepare(_args: argparse.Namespace) -> int:
    settings = get_settings()
    infra = resolve_infra(settings)
    prepare(settings, infra.kafka_bootstrap, infra.cassandra_hosts)
    return 0


def _no_demo(_args: argparse.Namespace) -> int:
    say("meterly demo runs from a checkout of Meterly (git clone, then ./ops/run.sh)")
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterly", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    infra = sub.add_parser("infra", help="local Kafka and Cassandra (S3Proxy with --only s3): "
                           "up, down, status; env prints the settings to connect as Meterly")
    infra.add_argument("action", choices=["up", "down", "status", "env"])
    infra.add_argument("--cluster", action="store_true",
                       help="three Kafka brokers and three Cassandra nodes (fault tests)")
    infra.add_argument("--only", choices=list(ALL_COMPONENTS),
                       help="one component; s3 (S3Proxy) starts only when named here")
    infra.set_defaults(func=cmd_infra)

    run = sub.add_parser("run", help="provision what is not configured and run everything")
    run.add_argument("--port", type=int, help="HTTP port (default 3000 or METERLY_PORT)")
    run.set_defaults(func=cmd_run)

    sub.add_parser("gateway", help="run the HTTP gateway alone").set_defaults(func=cmd_gateway)

    worker = sub.add_parser("worker", help="run one worker process alone")
    worker.add_argument("name")
    worker.set_defaults(func=cmd_worker)

    sub.add_parser("prepare", help="create topics and apply Cassandra migrations").set_defaults(
        func=cmd_prepare
    )
    from ops import cli_admin, cli_billing, cli_secrets, doctor

    doctor.add_parser(sub)
    cli_billing.add_parser(sub)
    cli_admin.add_parsers(sub)
    cli_secrets.add_parser(sub)
    try:
        from ops import demo
    except ImportError:  # an installed Meterly: the demo ships with the checkout only
        sub.add_parser("demo", help="sample tenants and traffic (from a checkout of Meterly)"
                       ).set_defaults(func=_no_demo)
    else:
        demo.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ProvisioningError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
