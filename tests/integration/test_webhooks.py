"""Webhook delivery end to end: real Kafka, Cassandra, dispatcher and an aiohttp receiver.

Signatures are verified with the ``standardwebhooks`` reference library, not with Meterly's
code. The retry schedule is shortened (``METERLY_WEBHOOK_RETRY_SCHEDULE``) so that a whole
schedule runs in seconds; the code path is the production one.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from processors.billing.core.messages import PDF_LINK_TTL
from processors.kafka.config import client_config
from processors.runtime.settings import Settings
from processors.usage.core.periods import period_bounds, period_of
from schemas import webhooks_v1
from schemas.topics import ADMIN, WEBHOOK_EVENTS
from tests.stack import (
    ALL_WORKERS,
    Stack,
    rss,
    start_stack,
    wait_for_usage,
    wait_until,
)
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration

SCHEDULE = (1.0, 2.0, 3.0)  # seconds; three retries, four attempts in all
ATTEMPT_TIMEOUT = 4.0
MiB = 2**20
#: Growth of the dispatcher's resident memory allowed while it receives a 400 MB answer.
ANSWER_BOUND = 30 * MiB


@pytest.fixture(scope="module")
def stack(settings: Settings, clock: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(
            settings, tmp_path_factory.mktemp("webhooks"), gateways=1,
            workers=ALL_WORKERS,
            extra_env={"METERLY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
                       "METERLY_WEBHOOK_RETRY_SCHEDULE": ",".join(map(str, SCHEDULE)),
                       "METERLY_WEBHOOK_READ_TIMEOUT": "1", "METERLY_CLOCK_FILE": str(clock),
                       "METERLY_WEBHOOK_ATTEMPT_TIMEOUT": str(ATTEMPT_TIMEOUT),
                       "METERLY_WEBHOOK_BREAKER_COOLDOWN": "2",
                       "METERLY_BILLING_TICK_SECONDS": "0.5",
                       "METERLY_INVOICE_PREFIX": "WH"}) as running:
        with running.client() as admin:
            made = admin.post("/v1/admin/plans", json={
                "name": "starter", "currency": "EUR", "flat_fee": "10.00",
                "prices": {"calls": {"model": "per_unit", "unit_price": "0.01",
                                     "included": "10"}}})
            assert made.status_code == 201, made.text
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _endpoint(stack: Stack, tenant: str, url: str, **extra: Any) -> tuple[str, str]:
    with stack.client() as admin:
        made = admin.post(f"/v1/admin/tenants/{tenant}/webhooks", json={"url": url, **extra})
        assert made.status_code == 201, made.text
        assert made.json()["secret"].startswith("whsec_")
        return made.json()["id"], made.json()["secret"]


def _until(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    return wait_until(what, probe, timeout)


def _verified(secret: str, received: Any) -> dict[str, Any]:
    """The payload, as the reference library verifies it (raises if the signature is bad)."""
    payload: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return payload


def _send_messages(settings: Settings, stack: Stack, tenant: str, n: int) -> list[str]:
    """Put ``n`` messages for ``tenant`` on the message topic, as an event source would."""
    assert settings.kafka_bootstrap
    producer = Producer(client_config(settings.kafka_bootstrap))
    topic = WEBHOOK_EVENTS.full_name(stack.settings.topic_prefix)
    ids = []
    for _ in range(n):
        message = webhooks_v1.Message(
            f"msg_test_{uuid.uuid4().hex[:12]}", webhooks_v1.INVOICE_VOIDED, tenant,
            datetime.now(UTC).isoformat(), {"invoice": {"id": "inv_test"}})
        producer.produce(topic, webhooks_v1.encode_message(message), key=tenant.encode())
        ids.append(message.id)
    assert producer.flush(10) == 0
    return ids


def _admin_records(settings: Settings, stack: Stack, key: bytes) -> list[bytes]:
    """Every value the admin topic holds under ``key``, oldest first, read from the start."""
    assert settings.kafka_bootstrap
    consumer = Consumer({**client_config(settings.kafka_bootstrap),
                         "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False})
    topic = ADMIN.full_name(stack.settings.topic_prefix)
    try:
        _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        found, position = [], 0
        while position < end:
            record = consumer.poll(10)
            assert record is not None, "the admin topic stopped short of its end"
            assert record.error() is None, record.error()
            position = record.offset() + 1
            if record.key() == key:
                found.append(record.value())
        return found
    finally:
        consumer.close()


def _attempts(stack: Stack, tenant: str, endpoint: str) -> list[dict[str, Any]]:
    with stack.client() as admin:
        answer = admin.get(f"/v1/admin/tenants/{tenant}/webhooks/{endpoint}/deliveries")
        assert answer.status_code == 200, answer.text
        result: list[dict[str, Any]] = answer.json()
        return result


def test_receiver_down_then_up_gets_every_event_signed(stack: Stack, receiver: Receiver,
                                                       clock: Path) -> None:
    tenant, key = stack.new_tenant("Hooked GmbH", plan="starter")
    _endpoint_id, secret = _endpoint(stack, tenant, receiver.url)
    # Real sources: 10 calls pass 80 % and 100 % of the 10 included; closing the period
    # finalizes an invoice and renders its PDF.
    with stack.client(token=key) as client:
        for _ in range(10):
            assert client.get("/v1/resources/calls").status_code == 200
    wait_for_usage(stack, key, {"calls": (10, "10")})
    period = period_of(datetime.now(UTC))
    clock.write_text((period_bounds(period)[1] + timedelta(hours=1, seconds=16)).isoformat())
    with stack.client() as admin:
        # On demand: other tests in this keyspace may have run this period's scheduled close.
        closing = admin.post("/v1/admin/billing/close",
                             json={"period": period, "tenant_ids": [tenant]})
        assert closing.status_code == 202, closing.text
    # The first attempts fail: nothing listens yet. Start the receiver once one has failed.
    _until("a failed attempt", lambda: [a for a in _attempts(stack, tenant, _endpoint_id)
                                        if a["outcome"] == "failed"], timeout=60)
    receiver.start()

    def all_three() -> set[str] | None:
        types = {_verified(secret, r)["type"] for r in receiver.received}
        wanted = {webhooks_v1.USAGE_THRESHOLD, webhooks_v1.INVOICE_FINALIZED}
        return types if wanted <= types and len(receiver.ids()) >= 3 else None

    _until("threshold and invoice messages", all_three, timeout=90)
    payloads = {r.headers["webhook-id"]: _verified(secret, r) for r in receiver.received}
    thresholds = sorted(p["data"]["percent"] for p in payloads.values()
                        if p["type"] == webhooks_v1.USAGE_THRESHOLD)
    assert thresholds == [80, 100]
    invoice = next(p["data"]["invoice"] for p in payloads.values()
                   if p["type"] == webhooks_v1.INVOICE_FINALIZED)
    assert invoice["number"].startswith("WH-")
    assert invoice["pdf_url"].startswith("http")
    # The link lasts PDF_LINK_TTL (7 days) from when it was signed, moments ago.
    expires = datetime.fromisoformat(invoice["pdf_url_expires_at"])
    assert abs(expires - (datetime.now(UTC) + PDF_LINK_TTL)) < timedelta(minutes=5), expires
    # The receiver being down shows in the log as failed attempts before the success.
    # (Each attempt is logged in a batch right after the receiver answered.)
    def all_logged() -> list[dict[str, Any]] | None:
        found = _attempts(stack, tenant, _endpoint_id)
        delivered = {x["message_id"] for x in found if x["outcome"] == "delivered"}
        return found if delivered >= set(payloads) else None

    attempts = _until("every delivery in the attempt log", all_logged, timeout=30)
    assert any(a["outcome"] == "failed" for a in attempts)

    # Voiding the invoice sends invoice.voided.
    with stack.client() as admin:
        voided = admin.post(f"/v1/admin/tenants/{tenant}/invoices/{invoice['id']}/void")
        assert voided.status_code == 200, voided.text
    void = _until("invoice.voided", lambda: [
        p for r in receiver.received
        if (p := _verified(secret, r))["type"] == webhooks_v1.INVOICE_VOIDED])
    assert void[0]["data"]["invoice"]["number"] == invoice["number"]
    assert void[0]["data"]["invoice"]["status"] == "void"


def test_failing_receiver_follows_the_schedule_then_dead_letter_and_replay(
        settings: Settings, stack: Stack, receiver: Receiver) -> None:
    tenant, _key = stack.new_tenant("Failing Ltd")
    endpoint, secret = _endpoint(stack, tenant, receiver.url)
    receiver.mode = "fail"
    receiver.start()
    [message_id] = _send_messages(settings, stack, tenant, 1)
    _until("four attempts", lambda: len(receiver.received) >= 4 or None, timeout=60)
    times = [r.at for r in receiver.received if r.headers["webhook-id"] == message_id]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, planned in zip(gaps, SCHEDULE, strict=True):
        # +-20 % jitter, plus the time to poll a paused partition back in.
        assert planned * 0.8 - 0.05 <= gap <= planned * 1.2 + 1.5, (gaps, SCHEDULE)
    for r in receiver.received:
        _verified(secret, r)
    # Once the fourth attempt is logged as dead-lettered, no fifth can come: the schedule
    # has ended, and the receiver saw exactly four.
    def dead_lettered() -> list[dict[str, Any]] | None:
        found = _attempts(stack, tenant, endpoint)
        return found if any(x["outcome"] == "dead_lettered" for x in found) else None

    attempts = _until("the fourth attempt dead-lettered", dead_lettered)
    assert len(receiver.received) == 4, [r.at for r in receiver.received]
    assert sorted(a["attempt"] for a in attempts) == [1, 2, 3, 4]
    assert all(a["status_code"] == 500 for a in attempts)
    assert [a["outcome"] for a in sorted(attempts, key=lambda a: a["attempt"])] == [
        "failed", "failed", "failed", "dead_lettered"]
    with stack.client() as admin:
        dead = _until("the dead letter", lambda: [
            d for d in admin.get("/v1/admin/webhooks/dead-letter").json()
            if d["message_id"] == message_id])
        assert dead[0]["attempts"] == 4
        assert dead[0]["last_error"] == "HTTP 500"

        receiver.mode = "ok"
        replay = admin.post("/v1/admin/webhooks/dead-letter/replay",
                            json={"endpoint_id": endpoint})
        assert replay.status_code == 202, replay.text
        assert replay.json()["replayed"] == 1  # the one dead letter of this endpoint
    delivered = _until("the replayed delivery", lambda: [
        r for r in receiver.received[4:] if r.headers["webhook-id"] == message_id])
    assert _verified(secret, delivered[0])["type"] == webhooks_v1.INVOICE_VOIDED

    # One delivery replayed by hand, from the message log.
    with stack.client() as admin:
        again = admin.post(f"/v1/admin/tenants/{tenant}/webhooks/{endpoint}/deliveries/"
                           f"{message_id}/replay")
        assert again.status_code == 202, again.text
    _until("the hand replay", lambda: len(
        [r for r in receiver.received if r.headers["webhook-id"] == message_id]) >= 6 or None)
    # Each replay is one attempt, logged as delivered: four failed, then two delivered,
    # and the receiver saw exactly those six.
    def both_replays() -> list[dict[str, Any]] | None:
        found = _attempts(stack, tenant, endpoint)
        return found if [x["outcome"] for x in found].count("delivered") >= 2 else None

    logged = _until("both replays in the attempt log", both_replays)
    assert sorted(x["outcome"] for x in logged) == [
        "dead_lettered", "delivered", "delivered", "failed", "failed", "failed"], logged
    assert len([r for r in receiver.received if r.headers["webhook-id"] == message_id]) == 6


def test_slow_receiver_times_out_as_a_failure(settings: Settings, stack: Stack,
                                              receiver: Receiver) -> None:
    tenant, _key = stack.new_tenant("Slow Inc")
    endpoint, _secret = _endpoint(stack, tenant, receiver.url)
    receiver.mode = "slow"
    receiver.slow_seconds = 5.0  # far past the 1 s read timeout
    receiver.start()
    _send_messages(settings, stack, tenant, 1)
    first = _until("a timed-out attempt", lambda: [
        a for a in _attempts(stack, tenant, endpoint) if a["attempt"] == 1])
    assert first[0]["outcome"] == "failed"
    assert first[0]["error"] == "timeout"
    assert first[0]["status_code"] is None
    # Cut by the 1 s read timeout, long before the receiver would have answered.
    assert 900 <= first[0]["latency_ms"] < 5000


def test_a_400_mb_answer_is_not_read_and_a_dripping_one_is_cut(
        settings: Settings, stack: Stack, receiver: Receiver) -> None:
    dispatcher = next(w for w in stack.workers if w.name == "webhook-dispatcher")
    assert dispatcher.proc is not None
    tenant, _key = stack.new_tenant("Loud Answers Ltd")
    endpoint, _secret = _endpoint(stack, tenant, receiver.url)
    receiver.mode = "huge"
    receiver.start()
    before = rss(dispatcher.proc.pid)
    _send_messages(settings, stack, tenant, 1)
    first = _until("the attempt with the 400 MB answer", lambda: [
        a for a in _attempts(stack, tenant, endpoint) if a["attempt"] == 1])
    grown = rss(dispatcher.proc.pid) - before
    print(f"dispatcher resident memory: {before / MiB:.0f} MiB before, grown "
          f"{grown / MiB:.1f} MiB for a 400 MB answer (bound {ANSWER_BOUND / MiB:.0f} MiB)")
    # Its status was read, and counts: a delivery. Its body was not (64 KiB at most).
    assert first[0]["outcome"] == "delivered"
    assert first[0]["status_code"] == 200
    assert first[0]["latency_ms"] < 5000
    assert grown < ANSWER_BOUND
    # A 200 dripped a byte every 0.25 s never trips the 1 s read timeout: the attempt's
    # deadline cuts it, a failure, long before the receiver's 30 s of drip end.
    receiver.mode = "drip"
    _send_messages(settings, stack, tenant, 1)
    cut = _until("the attempt with the dripping answer", lambda: [
        a for a in _attempts(stack, tenant, endpoint) if a["attempt"] == 1
        and a["outcome"] != "delivered"], timeout=60)
    assert cut[0]["outcome"] == "failed"
    assert cut[0]["error"] == "timeout"
    assert ATTEMPT_TIMEOUT * 1000 - 100 <= cut[0]["latency_ms"] < ATTEMPT_TIMEOUT * 1000 + 2000


def test_secret_rotation_signs_with_both_secrets(settings: Settings, stack: Stack,
                                                 receiver: Receiver) -> None:
    tenant, _key = stack.new_tenant("Rotating BV")
    endpoint, old = _endpoint(stack, tenant, receiver.url)
    receiver.start()
    with stack.client() as admin:
        rotated = admin.post(f"/v1/admin/tenants/{tenant}/webhooks/{endpoint}/rotate-secret",
                             json={"overlap_seconds": 3600})
        assert rotated.status_code == 201, rotated.text
        new = rotated.json()["secret"]
        assert new != old
        assert rotated.json()["secrets_in_use"] == 2
    [message_id] = _send_messages(settings, stack, tenant, 1)
    [got] = _until("the delivery", lambda: [
        r for r in receiver.received if r.headers["webhook-id"] == message_id])
    assert _verified(old, got)["type"] == webhooks_v1.INVOICE_VOIDED
    assert _verified(new, got)["type"] == webhooks_v1.INVOICE_VOIDED
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(got.body, got.headers)
    # At rest, on the admin topic every process reads, both secrets are sealed: neither
    # appears in any record (processors.webhooks.core.sealing).
    records = _admin_records(settings, stack, f"webhook:{endpoint}".encode())
    assert len(records) >= 2
    for secret in (old, new):
        assert all(secret.encode() not in r and secret[6:].encode() not in r for r in records)
    latest = orjson.loads(records[-1])
    assert [x["secret"][:5] for x in latest["secrets"]] == ["mse1.", "mse1."]


def test_urls_resolving_to_private_addresses_are_refused(stack: Stack) -> None:
    tenant, _key = stack.new_tenant("Ssrf Probe")
    with stack.client() as admin:
        for url in ("http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data",
                    "http://[fd00::1]/x", "ftp://example.com/x",
                    # Review L2: ranges Python calls global, and names that are no DNS name
                    # (a 64-character label used to give a 500).
                    "http://[fec0::1]/", "http://192.88.99.1/", "http://192.0.0.8/",
                    f"http://{'a' * 64}.example.com/", "http://exa_mple.com/"):
            refused = admin.post(f"/v1/admin/tenants/{tenant}/webhooks", json={"url": url})
            assert refused.status_code == 422, (url, refused.text)
            # Private addresses are refused as such; a scheme other than http(s) is a
            # malformed request.
            wanted = "invalid-request" if url.startswith("ftp:") else "webhook-url-refused"
            assert refused.json()["type"].rsplit("/", 1)[1] == wanted, (url, refused.text)
