"""Exactly-once counting under SIGKILL at each protocol step, rebalances, a zombie worker and a
broker restart.

Each scenario (``tests/faults.py``) writes a load of usage events (10 % duplicate
identities) packed into records straight to ``usage.v1`` while its faults land, then
compares the committed counters in the changelog and in Cassandra with totals computed
independently from the generated load. Every fault must have landed on a live process with
the load still flowing, at the step it names (a failpoint's own line, the partitions moved,
and the process must have recovered;
a worker that restarted itself beyond its planned fault fails the run. The steps named are
those of the numbered protocols in ``processors/usage/counter.py`` and
``processors/usage/mirror.py``. Each scenario runs twice with fresh seeds (printed; replay
with ``METERLY_FAULT_SEED``); ``python -m ops.bench.faults`` repeats them for the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.runtime.settings import Settings
from tests.faults import COUNTING, run_counting, seed_for
from tests.infra import Infra

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("scenario", COUNTING)
@pytest.mark.parametrize("round_", [1, 2])
def test_counting_is_exact_under(infra: Infra, settings: Settings, tmp_path: Path,
                                 scenario: str, round_: int) -> None:
    run_counting(settings, tmp_path, scenario, seed_for(scenario),
                 restart_kafka=lambda: infra.restart("kafka")).check()
