"""The HTTP and Kafka-ingest fault scenarios, through to the invoice: gateways SIGKILLed or
killed by the ``gateway.after-ack`` failpoint, Kafka frozen under HTTP ingest, the ingest
validator killed (SIGKILL, the ``ingest-validator.before-commit`` failpoint) and paused.
``tests/integration/test_http_faults.py`` runs each twice; ``ops/bench/faults.py`` repeats
them for the fault report.
"""

from __future__ import annotations

import json
import random
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from confluent_kafka import Producer

from processors.kafka.config import client_config
from processors.usage.core.periods import period_of
from schemas.topics import INGEST, INGEST_VALIDATOR_GROUP
from tests.faults import Fault, Outcome, committed_offsets, log_has, wait_until_or_false
from tests.infra import Infra, LocalInfra
from tests.stack import Stack, wait_until
from tests.usage_load import WorkerProcess, wait_for

# --- The HTTP and Kafka ingest paths, through to the invoice -------------------------------

#: The scenarios, in the order the suite runs them; ``kafka-frozen`` needs provisioned brokers.
INGEST_SCENARIOS = ("gateway-sigkill", "gateway.after-ack", "kafka-frozen",
                    "validator-sigkill", "validator-paused", "ingest-validator.before-commit")

PLAN = {"name": "faults", "currency": "EUR",
        "prices": {"calls": {"model": "per_unit", "unit_price": "0.01"}}}
CLIENTS = 6
EVENTS_PER_BATCH = 100
#: Batches a client sends at least; it keeps sending until the scenario landed its faults.
BATCHES = 25


@dataclass(eq=False)  # a thread is hashed by identity
class Client(threading.Thread):
    """Sends batches (ids fixed per batch) to the gateways in turn; on a transport error it
    sends the same batch again to the other gateway, on a 503 after Retry-After, as the API
    tells clients to. Every gateway gets traffic, a restarted one too."""

    stack: Stack
    key: str
    index: int
    tag: str
    transport_errors: int = 0
    unavailable: list[str] = field(default_factory=list)
    sent: int = 0
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        b = 0
        while b < BATCHES or not self.stop.is_set():
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            yield [{"specversion": "1.0", "id": f"{self.tag}-c{self.index}-b{b}-e{e}",
                    "source": "faults", "type": "calls", "time": now}
                   for e in range(EVENTS_PER_BATCH)]
            b += 1

    def run(self) -> None:
        try:
            for b, batch in enumerate(self.batches()):
                gateway = (self.index + b) % len(self.stack.gateways)
                deadline = time.monotonic() + 120
                while True:
                    assert time.monotonic() < deadline, "a batch was never answered"
                    url = self.stack.gateways[gateway].url
                    try:
                        answer = httpx.post(f"{url}/v1/events", json=batch, timeout=30,
                                            headers={"Authorization": f"Bearer {self.key}"})
                    except httpx.TransportError:
                        self.transport_errors += 1
                        gateway = (gateway + 1) % len(self.stack.gateways)
                        time.sleep(0.2)
                        continue
                    if answer.status_code == 503:
                        self.unavailable.append(answer.json()["detail"])
                        time.sleep(float(answer.headers.get("retry-after", "1")))
                        continue
                    assert answer.status_code == 200, answer.text
                    break
                self.sent += len(batch)
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported by the scenario
            self.error = exc


class IngestProducer(threading.Thread):
    """A platform service writing CloudEvents to the Kafka ingest topic (tenant id as the key)
    until stopped, at least ``at_least`` events; ``sent`` counts acknowledged events."""

    def __init__(self, stack: Stack, tenant: str, key: str, at_least: int = 6000) -> None:
        super().__init__(daemon=True)
        self.stack, self.tenant, self.at_least = stack, tenant, at_least
        self.headers = [("content-type", b"application/cloudevents+json"),
                        ("meterly-key", key.encode())]
        self.sent = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            assert self.stack.settings.kafka_bootstrap
            topic = INGEST.full_name(self.stack.settings.topic_prefix)
            producer = Producer({**client_config(self.stack.settings.kafka_bootstrap),
                                 "enable.idempotence": True, "acks": "all", "linger.ms": 5})
            acked = [0]

            def delivered(err: Any, _msg: Any) -> None:
                assert err is None, err
                acked[0] += 1

            n = 0
            while n < self.at_least or not self.stop.is_set():
                now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                event = {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "faults",
                         "type": "calls", "time": now}
                producer.produce(topic, json.dumps(event).encode(), key=self.tenant.encode(),
                                 headers=self.headers, on_delivery=delivered)
                producer.poll(0)
                n += 1
                if n % 200 == 0:
                    time.sleep(0.05)
                    self.sent = acked[0]
            assert producer.flush(120) == 0, "ingest records left unsent"
            self.sent = acked[0]
            assert self.sent == n
        except BaseException as exc:  # noqa: BLE001 - reported by the scenario
            self.error = exc


def freezer(infra: Infra) -> Callable[[int], None]:
    """``run_ingest``'s ``signal_kafka`` for ``infra``: signals the broker it provisioned."""
    def signal_kafka(signum: int) -> None:
        if not isinstance(infra, LocalInfra):
            raise RuntimeError("kafka-frozen freezes only a broker the suite provisioned")
        infra.signal("kafka-1", signum)

    return signal_kafka


def prepare_ingest_stack(stack: Stack) -> None:
    """The plan every ingest scenario's tenant subscribes to (once per stack)."""
    with stack.client() as admin:
        made = admin.post("/v1/admin/plans", json=PLAN)
        assert made.status_code in (201, 409), made.text


def run_ingest(stack: Stack, scenario: str, seed: int,
               signal_kafka: Callable[[int], None] | None = None) -> Outcome:
    """Usage through the gateways (or the Kafka ingest topic and the validator) while the
    scenario's faults land; then a close on demand, and the invoice must bill exactly the
    events answered (or acknowledged by Kafka)."""
    rng = random.Random(seed)
    began = time.monotonic()
    tag = secrets.token_hex(3)
    tenant, key = stack.new_tenant(f"Faults {scenario} {tag}", plan="faults")
    period = period_of(datetime.now(UTC))
    outcome = Outcome(scenario, seed, planned=2 if scenario.startswith("gateway") else 1)
    validator = next(w for w in stack.workers if w.name == "ingest-validator")
    via_kafka = "validator" in scenario
    clients: list[Client] = []
    ingest: IngestProducer | None = None
    if scenario == "ingest-validator.before-commit":
        # The validator restarts armed, dies at its n-th commit, and is restarted clean.
        validator.arm(f"ingest-validator.before-commit@{rng.randint(3, 10)}")
        validator.kill()
        validator.start()
    if via_kafka:
        ingest = IngestProducer(stack, tenant, key)
        ingest.start()
    else:
        clients = _clients(stack, key, tag)

    def flowing() -> bool:
        return ingest.is_alive() if ingest else all(c.is_alive() for c in clients)

    def answered() -> int:
        return ingest.sent if ingest else sum(c.sent for c in clients)

    try:
        wait_until("load flowing", lambda: answered() >= 1500, timeout=120)
        time.sleep(rng.uniform(0.0, 2.0))
        if scenario == "gateway-sigkill":
            for index in (0, 1):
                outcome.faults.append(_kill_gateway(stack, index, clients, flowing))
        elif scenario == "gateway.after-ack":
            for index in (0, 1):
                outcome.faults.append(_gateway_failpoint(stack, index, clients, flowing, rng))
        elif scenario == "kafka-frozen":
            assert signal_kafka is not None, "freezing Kafka needs the broker's process"
            outcome.faults.append(_freeze_kafka(clients, flowing, signal_kafka))
        elif scenario == "validator-sigkill":
            fault = Fault("SIGKILL", "ingest-validator", step="between or inside batches")
            fault.alive_before, fault.flowing = validator.alive(), flowing()
            progress = _validator_progress(stack)
            fault.at = validator.kill()
            validator.start()
            fault.recovered = _recovered_validator(stack, validator, progress)
            outcome.faults.append(fault)
        elif scenario == "validator-paused":
            fault = Fault("SIGSTOP 12 s", "ingest-validator",
                          step="paused with its transaction open, past the session timeout")
            fault.alive_before, fault.flowing = validator.alive(), flowing()
            validator.pause()
            fault.at = time.monotonic()
            progress = _validator_progress(stack)
            time.sleep(12)
            held = _validator_progress(stack) == progress  # nothing moved while it slept
            validator.resume()
            fault.recovered = held and _recovered_validator(stack, validator, progress)
            outcome.faults.append(fault)
        elif scenario == "ingest-validator.before-commit":
            fault = Fault("failpoint", "ingest-validator", step=scenario)
            wait_for(lambda: log_has(validator, f"failpoint {scenario} reached"), 90,
                     "the validator's failpoint")
            fault.at = time.monotonic()
            fault.alive_before, fault.flowing = True, flowing()
            progress = _validator_progress(stack)
            fault.recovered = wait_until_or_false(
                lambda: validator.restarts >= 1 and validator.alive(), 30) and \
                _recovered_validator(stack, validator, progress)
            outcome.faults.append(fault)
        else:
            raise ValueError(f"unknown ingest scenario {scenario!r}")
    finally:
        for index, gw in enumerate(stack.gateways):
            if gw.proc.poll() is not None:
                stack.start_gateway(index)
        if not validator.alive():
            wait_until_or_false(validator.alive, 30)
        total = _finish(clients, ingest)
    outcome.events = total
    counted = _invoiced(stack, tenant, key, period, total)
    outcome.lost, outcome.double = max(0, total - counted), max(0, counted - total)
    if scenario == "kafka-frozen":
        texts = {t for c in clients for t in c.unavailable}
        if not all("some may have been recorded" in t for t in texts):
            outcome.notes.append(f"a 503 without the honest text: {texts}")
            outcome.faults[0].recovered = False
    outcome.seconds = time.monotonic() - began
    return outcome


def _clients(stack: Stack, key: str, tag: str) -> list[Client]:
    # Every gateway knows the new key (it reaches the other through the admin topic).
    for gw in stack.gateways:
        wait_until("the key on every gateway", lambda url=gw.url: httpx.get(
            f"{url}/v1/usage", headers={"Authorization": f"Bearer {key}"},
            timeout=5).status_code == 200, timeout=30)
    clients = [Client(stack, key, i, tag) for i in range(CLIENTS)]
    for c in clients:
        c.start()
    return clients


def _finish(clients: list[Client], ingest: IngestProducer | None) -> int:
    """Stop the load; return how many events were answered (each once: ids are per batch)."""
    for c in clients:
        c.stop.set()
    for c in clients:
        c.join(600)
        assert c.error is None, repr(c.error)
        assert c.sent >= BATCHES * EVENTS_PER_BATCH
    if ingest is not None:
        ingest.stop.set()
        ingest.join(600)
        assert ingest.error is None, repr(ingest.error)
        return ingest.sent
    return sum(c.sent for c in clients)


def _kill_gateway(stack: Stack, index: int, clients: list[Client],
                  flowing: Callable[[], bool]) -> Fault:
    fault = Fault("SIGKILL", f"gateway-{index}", step="with requests in flight")
    before = sum(c.transport_errors for c in clients)
    fault.alive_before = stack.gateways[index].proc.poll() is None
    fault.flowing = flowing()
    fault.at = time.monotonic()
    stack.kill_gateway(index)  # asserts it died of SIGKILL
    hit = wait_until_or_false(lambda: sum(c.transport_errors for c in clients) > before, 30)
    fault.step += "; a client's request failed on it" if hit else "; no client noticed"
    time.sleep(1.0)  # a downtime: clients go to the other gateway meanwhile
    stack.start_gateway(index)
    fault.recovered = hit and stack.gateways[index].proc.poll() is None
    return fault


def _gateway_failpoint(stack: Stack, index: int, clients: list[Client],
                       flowing: Callable[[], bool], rng: random.Random) -> Fault:
    """The gateway dies after Kafka acknowledged a batch and before it answered: the client
    retries events that are recorded already (counted once by the counter's dedupe)."""
    gw = stack.gateways[index]
    fault = Fault("failpoint", f"gateway-{index}", step="gateway.after-ack")
    since = gw.log.stat().st_size
    # Restart it armed: the n-th acknowledged batch kills it.
    fault.alive_before = gw.proc.poll() is None
    stack.kill_gateway(index)
    stack.start_gateway(index, {"METERLY_FAILPOINTS": f"gateway.after-ack@{rng.randint(2, 6)}"},
                        wait=False)
    reached = wait_until_or_false(lambda: "failpoint gateway.after-ack reached" in
                                  gw.log.read_bytes()[since:].decode(errors="replace"), 60)
    fault.at = time.monotonic()
    fault.flowing = flowing()
    if reached:
        assert gw.proc.wait(10) == -signal.SIGKILL
    elif gw.proc.poll() is None:
        stack.kill_gateway(index)  # never reached: free its port for the clean launch
    stack.start_gateway(index)
    fault.recovered = reached and gw.proc.poll() is None
    return fault


def _freeze_kafka(clients: list[Client], flowing: Callable[[], bool],
                  signal_kafka: Callable[[int], None]) -> Fault:
    fault = Fault("SIGSTOP", "kafka-1", step="under HTTP ingest, past the 10 s delivery timeout")
    fault.alive_before, fault.flowing = True, flowing()
    fault.at = time.monotonic()
    signal_kafka(signal.SIGSTOP)
    try:
        answered_503 = wait_until_or_false(lambda: any(c.unavailable for c in clients), 60)
    finally:
        signal_kafka(signal.SIGCONT)
    before = sum(c.sent for c in clients)
    fault.recovered = answered_503 and wait_until_or_false(
        lambda: sum(c.sent for c in clients) > before + 1000, 120)
    fault.step += "; gateways answered 503" if answered_503 else "; no 503 seen"
    return fault


def _validator_progress(stack: Stack) -> int:
    bootstrap, prefix = stack.settings.kafka_bootstrap, stack.settings.topic_prefix
    assert bootstrap
    return committed_offsets(bootstrap, f"{prefix}{INGEST_VALIDATOR_GROUP}",
                             INGEST.full_name(prefix))


def _recovered_validator(stack: Stack, validator: WorkerProcess, progress: int) -> bool:
    """The validator is running and has committed past where it was at the fault."""
    return wait_until_or_false(
        lambda: validator.alive() and _validator_progress(stack) > progress, 90, every=1.0)


def _invoiced(stack: Stack, tenant: str, key: str, period: str, total: int) -> int:
    """Close the period on demand; return the quantity the finalized invoice bills (after
    checking the usage API agrees with it)."""
    with stack.client() as admin:
        r = admin.post("/v1/admin/billing/close", json={"period": period,
                                                        "tenant_ids": [tenant]})
        assert r.status_code == 202, r.text

    def invoice() -> dict[str, Any] | None:
        with stack.client() as admin:
            docs = admin.get(f"/v1/admin/tenants/{tenant}/invoices").json()
        return next((d for d in docs if d["period"] == period
                     and d["status"] == "finalized"), None)

    doc = wait_until("the invoice", invoice, timeout=240)
    quantity = sum((Decimal(ln["quantity"]) for ln in doc["lines"]
                    if ln.get("meter") == "calls" and ln["period"] == period), Decimal(0))
    with stack.client(token=key) as client:
        meters = client.get("/v1/usage").json()["meters"]
    counted = sum(m["count"] for m in meters if m["meter"] == "calls")
    assert counted == quantity, f"usage shows {counted}, the invoice bills {quantity}"
    assert quantity == int(quantity)
    return int(quantity)
