"""The fault report: every fault scenario of the suite, repeated, in one table.

    python -m ops.bench.faults [--repeat 10] [--only counter-sigkill,gateway-sigkill]
                               [--results faults.jsonl] [--markdown table.md]

Runs the scenarios the fault tests run (``tests/faults.py`` for the counting path,
``tests/faults_ingest.py`` for the HTTP and Kafka-ingest paths through to the invoice) on the
Kafka and Cassandra that ``meterly infra up`` runs (or that METERLY_KAFKA_BOOTSTRAP and
METERLY_CASSANDRA_HOSTS name; ``kafka-frozen`` needs the provisioned broker, it freezes its
process). Each repetition has its own seed and prints its outcome as it ends, so a bad run
replays with ``METERLY_FAULT_SEED``. The table gives, per scenario: runs, faults landed of
those planned (a fault counts as landed only on a live process, with load flowing, at the
step it names, and recovered from), events, exact runs, events lost and counted twice.
``--results`` appends every outcome to a JSON-lines file and prints the table of every
outcome the file holds, so a report can be run in parts (``--only``) and read as one.
The exit status is 1 unless every run was exact with every planned fault landed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ops.provision import prepare
from processors.runtime.settings import Settings
from tests.faults import COUNTING, Fault, Outcome, run_counting
from tests.faults_ingest import INGEST_SCENARIOS, freezer, prepare_ingest_stack, run_ingest
from tests.infra import Infra, open_infra
from tests.stack import BILLING_WORKERS, CORE_WORKERS, Stack, start_stack


@dataclass
class Row:
    scenario: str
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return len(self.outcomes) + len(self.errors)

    @property
    def good(self) -> int:
        return sum(o.passed for o in self.outcomes)

    def cells(self) -> list[str]:
        landed = sum(o.landed for o in self.outcomes)
        planned = sum(o.planned for o in self.outcomes)
        seconds = sorted(o.seconds for o in self.outcomes)
        median = f"{seconds[len(seconds) // 2]:.0f}" if seconds else "-"
        return [self.scenario, str(self.runs), f"{landed}/{planned}",
                f"{sum(o.events for o in self.outcomes):,}",
                f"{sum(o.exact for o in self.outcomes)}/{self.runs}",
                str(sum(o.lost for o in self.outcomes)),
                str(sum(o.double for o in self.outcomes)), median,
                str(len(self.errors))]


HEADER = ["scenario", "runs", "faults landed", "events", "exact runs", "lost", "double",
          "median s", "errors"]


def table(rows: Sequence[Row]) -> str:
    lines = [HEADER, *(r.cells() for r in rows)]
    out = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines[1:]]
    return "\n".join(out)


def repeat(row: Row, times: int, run: Callable[[int], Outcome],
           results: Path | None = None) -> None:
    for n in range(times):
        seed = random.randrange(1 << 30)
        try:
            outcome = run(seed)
        except Exception as exc:  # noqa: BLE001 - a scenario that errors is a bad run, reported
            row.errors.append(f"seed {seed}: {exc!r}")
            print(f"[{row.scenario} {n + 1}/{times}] seed {seed}: ERROR {exc!r}", flush=True)
            continue
        row.outcomes.append(outcome)
        if results is not None:
            with results.open("a") as out:
                out.write(json.dumps(dataclasses.asdict(outcome)) + "\n")
        print(f"[{row.scenario} {n + 1}/{times}] {outcome.summary()} ({outcome.seconds:.0f} s)",
              flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--results", type=Path, help="append outcomes to this JSON-lines file")
    args = parser.parse_args(argv)
    wanted = [s for s in args.only.split(",") if s] or [*COUNTING, *INGEST_SCENARIOS]
    unknown = set(wanted) - {*COUNTING, *INGEST_SCENARIOS}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    infra = open_infra(Settings())
    run_id = secrets.token_hex(4)
    settings = Settings(kafka_bootstrap=infra.kafka_bootstrap,
                        cassandra_hosts=infra.cassandra_hosts,
                        cassandra_keyspace=f"meterly_faults_{run_id}",
                        topic_prefix=f"faults-{run_id}.")
    prepare(settings, infra.kafka_bootstrap, infra.cassandra_hosts)
    began = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="meterly-faults-") as tmp:
        root = Path(tmp)
        for scenario in (s for s in COUNTING if s in wanted):
            row = Row(scenario)
            rows.append(row)
            repeat(row, args.repeat, functools.partial(_counting, settings, infra, root, scenario),
                   args.results)
        ingest = [s for s in INGEST_SCENARIOS if s in wanted]
        if ingest:
            (root / "stack").mkdir()
            with start_stack(settings, root / "stack", gateways=2,
                             workers=(*CORE_WORKERS, *BILLING_WORKERS)) as stack:
                prepare_ingest_stack(stack)
                for scenario in ingest:
                    row = Row(scenario)
                    rows.append(row)
                    repeat(row, args.repeat, functools.partial(_ingest, stack, infra,
                                                                 scenario), args.results)
    infra.close()
    if args.results is not None:
        rows = _rows_of(args.results, [r for r in rows if r.errors])
    report = table(rows)
    minutes = (time.monotonic() - began) / 60
    seconds = sum(o.seconds for r in rows for o in r.outcomes)
    print(f"\n{report}\n\n{sum(r.runs for r in rows)} runs, {seconds / 60:.0f} min of "
          f"scenarios; this invocation took {minutes:.0f} min")
    if args.markdown:
        args.markdown.write_text(report + "\n")
    return 0 if all(r.good == r.runs for r in rows) else 1


def _rows_of(results: Path, errored: list[Row]) -> list[Row]:
    """Every outcome in ``results`` by scenario, in the suite's order (and this run's
    errors)."""
    rows = {s: Row(s) for s in (*COUNTING, *INGEST_SCENARIOS)}
    for line in results.read_text().splitlines():
        doc = json.loads(line)
        faults = [Fault(**f) for f in doc.pop("faults")]
        rows[doc["scenario"]].outcomes.append(Outcome(**doc, faults=faults))
    for row in errored:
        rows[row.scenario].errors += row.errors
    return [r for r in rows.values() if r.runs]


def _counting(settings: Settings, infra: Infra, root: Path, scenario: str,
              seed: int) -> Outcome:
    tmp = root / f"{scenario}-{secrets.token_hex(3)}"
    tmp.mkdir()
    return run_counting(settings, tmp, scenario, seed,
                        restart_kafka=lambda: infra.restart("kafka"))


def _ingest(stack: Stack, infra: Infra, scenario: str, seed: int) -> Outcome:
    return run_ingest(stack, scenario, seed, freezer(infra))


if __name__ == "__main__":
    sys.exit(main())
