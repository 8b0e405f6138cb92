"""Schemathesis against a running stack: the API fuzzed from its own OpenAPI document.

``fuzz`` runs the ``schemathesis`` CLI (every check, every phase) with one credential and
reads every request it made from the HAR report it writes, so the figures are the
server's answers, not schemathesis's own summary: requests, 5xx answers, error answers that
are not ``application/problem+json``, and the status codes seen. Used by
``tests/integration/test_api_fuzz.py`` (a short run in CI) and ``ops/bench/api_fuzz.py``
(thousands of requests, for docs/security.md).
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The fuzzer sends every operation without and with wrong credentials from one address, so
#: the failed-authentication throttle (20 a minute) would answer it 429 within seconds and
#: hide the 401s it checks for; the throttle has its own test (test_bounded_resources.py).
FUZZ_ENV = {"METERLY_AUTH_FAILURES_PER_MINUTE": "1000000"}
#: Kept out of the operator run: revoking the bootstrap token would leave the rest of the
#: run with a refused credential (the rule itself is tested in test_operators_audit.py).
EXCLUDED = r"^/v1/admin/operators/\{operator_id\}/revoke$"


@dataclass
class FuzzResult:
    credential: str
    requests: int
    server_errors: list[str]
    not_problems: list[str]
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: dict[str, int] = field(default_factory=dict)
    exit_code: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        classes = collections.Counter(f"{s // 100}xx" for s in self.statuses.elements())
        return (f"{self.credential}: {self.requests} requests, {len(self.server_errors)} 5xx, "
                f"{len(self.not_problems)} errors not problem+json, "
                f"{dict(sorted(classes.items()))}; schemathesis failures "
                f"{self.failures or 'none'} ({self.seconds:.0f} s)")


def fuzz(base_url: str, token: str, credential: str, report_dir: Path,
         max_examples: int, include_admin: bool, seed: int = 1,
         workers: int = 2) -> FuzzResult:
    report_dir.mkdir(parents=True, exist_ok=True)
    har = report_dir / f"{credential}.har.json"
    path_filter = (["--exclude-path-regex", EXCLUDED] if include_admin
                   else ["--exclude-path-regex", r"^/v1/admin/"])
    command = [str(Path(sys.executable).parent / "schemathesis"), "run",
               f"{base_url}/openapi.json",
               "--url", base_url, "-H", f"Authorization: Bearer {token}",
               "--checks", "all", "--max-examples", str(max_examples), "--seed", str(seed),
               "--workers", str(workers), "--request-timeout", "30",
               "--report", "har", "--report-har-path", str(har),
               "--suppress-health-check", "all", *path_filter]
    began = time.monotonic()
    ran = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    seconds = time.monotonic() - began
    (report_dir / f"{credential}.out.txt").write_text(ran.stdout + ran.stderr)
    if not har.exists():
        raise RuntimeError(f"schemathesis wrote no report (exit {ran.returncode}):\n"
                           f"{(ran.stdout + ran.stderr)[-3000:]}")
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses: collections.Counter[int] = collections.Counter()
    server_errors, not_problems = [], []
    for entry in entries:
        status = entry["response"]["status"]
        statuses[status] += 1
        request = f"{entry['request']['method']} {entry['request']['url']} -> {status}"
        kind = next((h["value"] for h in entry["response"]["headers"]
                     if h["name"].lower() == "content-type"), "")
        if status >= 500:
            server_errors.append(request)
        if status >= 400 and not kind.startswith("application/problem+json"):
            not_problems.append(f"{request} ({kind or 'no content type'})")
    failures = {code: int(n) for code, n in re.findall(
        r"(ST\d+)[^:\n]*: (\d+)", ran.stdout.split("Failures:", 1)[-1].split("Test cases", 1)[0]
    )} if "Failures:" in ran.stdout else {}
    return FuzzResult(credential, len(entries), server_errors, not_problems, statuses,
                      failures, ran.returncode, seconds)
