"""The HTTP and Kafka-ingest paths under faults, through to the invoice.

Each scenario (``tests/faults_ingest.py``) sends usage while its faults land, closes the
period on demand and compares the quantity the finalized invoice bills with the events the
load had answered, exactly:

- gateways SIGKILLed with requests in flight (a client's request must fail on the dead one),
  and killed by the ``gateway.after-ack`` failpoint after Kafka acknowledged a batch and
  before the client had its answer; clients retry every batch, same ids, on the other gateway;
- Kafka frozen (SIGSTOP) under HTTP ingest past the gateways' delivery timeout: they answer
  503 with the honest text, and retried batches are counted once;
- the ingest validator SIGKILLed, paused past its session timeout (nothing may move while it
  sleeps), and killed by the ``ingest-validator.before-commit`` failpoint, with its
  transaction written and not committed, under Kafka ingest.

Every fault must land on a live process with load flowing and be recovered from (the
validator commits past where it stood). Each runs twice with fresh seeds (printed; replay
with ``METERLY_FAULT_SEED``); ``python -m ops.bench.faults`` repeats them for the report.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from processors.runtime.settings import Settings
from tests.faults import seed_for
from tests.faults_ingest import INGEST_SCENARIOS, freezer, prepare_ingest_stack, run_ingest
from tests.infra import Infra
from tests.stack import BILLING_WORKERS, CORE_WORKERS, Stack, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(settings, tmp_path_factory.mktemp("http-faults"), gateways=2,
                     workers=(*CORE_WORKERS, *BILLING_WORKERS)) as running:
        prepare_ingest_stack(running)
        yield running


@pytest.mark.parametrize("scenario", INGEST_SCENARIOS)
@pytest.mark.parametrize("round_", [1, 2])
def test_ingest_is_exact_to_the_invoice_under(stack: Stack, infra: Infra, scenario: str,
                                              round_: int) -> None:
    run_ingest(stack, scenario, seed_for(scenario), freezer(infra)).check()
