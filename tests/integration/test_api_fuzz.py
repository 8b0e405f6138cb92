"""The API fuzzed from its OpenAPI document by schemathesis, with a tenant key and with the
operator token, against real gateways, Kafka and Cassandra (issue 14: 0 server errors,
every error a problem, every answer documented). A short run here; ``ops/bench/api_fuzz.py``
runs thousands of requests for docs/security.md."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from processors.runtime.settings import Settings
from tests.api_fuzz import FUZZ_ENV, fuzz
from tests.stack import ALL_WORKERS, Stack, start_stack

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "api-fuzz"


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("fuzz"), gateways=1,
                     workers=ALL_WORKERS, extra_env=FUZZ_ENV) as running:
        yield running


@pytest.mark.parametrize(("credential", "examples"), [("tenant-key", 8), ("operator", 4)])
def test_no_server_error_and_every_error_a_documented_problem(
        stack: Stack, credential: str, examples: int) -> None:
    if credential == "tenant-key":
        _tenant, token = stack.new_tenant("Fuzzed")
    else:
        token = stack.admin_token
    result = fuzz(stack.gateways[0].url, token, credential, ARTIFACTS, examples,
                  include_admin=credential == "operator")
    print(result.line())
    assert result.requests >= 200, result.line()
    assert result.server_errors == [], result.server_errors[:20]
    assert result.not_problems == [], result.not_problems[:20]
    # ST103 undocumented status code, ST105 undocumented content type.
    assert {k: v for k, v in result.failures.items() if k in ("ST103", "ST105")} == {}, \
        result.line()
