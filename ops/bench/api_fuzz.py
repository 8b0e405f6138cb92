"""The API fuzzed by schemathesis, at length, for docs/security.md.

    python -m ops.bench.api_fuzz [--examples 50] [--operator-examples 25] [--seed 1]

Starts a stack (one gateway, every worker) on the Kafka and Cassandra of ``meterly infra
up`` (or METERLY_KAFKA_BOOTSTRAP / METERLY_CASSANDRA_HOSTS), then runs schemathesis (every
check, every phase) with a tenant's API key on the tenant routes and with the operator
token on every route, and prints, from schemathesis's HAR report of each run: requests, 5xx
answers, error answers that are not problem+json, status classes, and schemathesis's own
failures by code. Beside them: the security review's run of 2026-12 (the baseline, a
different build): 11,419 + 24,604 requests, 0 + 1,186 5xx, 1,186 non-problem errors,
23,318 undocumented statuses. Exit 1 unless both runs had no 5xx and only problem errors.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ops.provision import prepare
from processors.runtime.settings import Settings
from tests.api_fuzz import FUZZ_ENV, fuzz
from tests.infra import open_infra
from tests.stack import ALL_WORKERS, start_stack


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50,
                        help="schemathesis --max-examples for the tenant-key run")
    parser.add_argument("--operator-examples", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reports", type=Path, default=Path("test-artifacts/api-fuzz-bench"))
    args = parser.parse_args(argv)
    infra = open_infra(Settings())
    run_id = secrets.token_hex(4)
    settings = Settings(kafka_bootstrap=infra.kafka_bootstrap,
                        cassandra_hosts=infra.cassandra_hosts,
                        cassandra_keyspace=f"meterly_fuzz_{run_id}",
                        topic_prefix=f"fuzz-{run_id}.")
    prepare(settings, infra.kafka_bootstrap, infra.cassandra_hosts)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="meterly-fuzz-") as tmp, \
                start_stack(settings, Path(tmp), gateways=1, workers=ALL_WORKERS,
                            extra_env=FUZZ_ENV) as stack:
            _tenant, key = stack.new_tenant("Fuzzed")
            url = stack.gateways[0].url
            for credential, token, examples, admin in (
                    ("tenant-key", key, args.examples, False),
                    ("operator", stack.admin_token, args.operator_examples, True)):
                result = fuzz(url, token, credential, args.reports, examples, admin,
                              seed=args.seed)
                print(result.line(), flush=True)
                for request in (result.server_errors + result.not_problems)[:20]:
                    print(f"    {request}")
                results.append(result)
    finally:
        infra.close()
    print("\n| credential | requests | 5xx | errors not problem+json | schemathesis failures |"
          "\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r.credential} | {r.requests:,} | {len(r.server_errors)} | "
              f"{len(r.not_problems)} | {r.failures or 'none'} |")
    print("| review (baseline, 2026-12) | 11,419 + 24,604 | 0 + 1,186 | 1,186 | "
          "148 unique (ST101 13, ST103 52, ST105 15, ST202 6, ST205 4, ...) |")
    return 0 if all(not r.server_errors and not r.not_problems for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
