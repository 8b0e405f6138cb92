"""The webhook dispatcher: messages -> signed HTTP deliveries, retried, logged, dead-lettered.

One asyncio process: an aiokafka consumer on the message topic and the seven retry topics,
an aiohttp client, and the attempt log in Cassandra. Not a Faust agent: waiting for a
delivery's next attempt means pausing one partition until its head record is due (and
seeking back to it), and committing offsets only up to the oldest delivery still in
flight; both need the consumer's partition controls, which Faust's streams do not expose.

Protocol, per record of webhook-events.v1 or a retry topic:

1. Take the record (``Consumer._take``); an unreadable one is skipped (``schemas.topics``).
   A delivery from a retry topic that is not due yet pauses its partition at that offset.
2. A message fans out to one delivery per enabled endpoint subscribed to its type; the
   message is saved in Cassandra (for replays) alongside the first attempts.
3. Attempt: sign (Standard Webhooks), POST without redirects through the SSRF guard, unless
   the endpoint's circuit is open (then the delivery waits in a retry topic, no attempt
   used) or the endpoint is disabled (then it goes to the dead-letter topic).
4. Log the attempt in Cassandra and mark the endpoint healthy or failing (disabling it on
   the admin topic after days of failures).
5. A failed attempt's delivery goes to the next retry topic, or to the dead-letter topic
   after the last one; Kafka acknowledges it.
6. The record is finished only when 2 to 5 are done; offsets are committed up to the
   oldest unfinished record (``OffsetTracker``), periodically and before a rebalance.

A crash before step 6 reads the record again and repeats 2 to 5: at least once, never zero
times; the receiver gets the same ``webhook-id`` and drops the repeat. Other guarantees:

- No sleeping in the consumer: every record of a retry topic waits the same delay, so the
  topic is in due order; a partition whose head is not due is paused, the others go on.
- Each endpoint has a circuit breaker: after 5 failures in a row, no request goes to it for
  a cool-down; its deliveries wait in a retry topic without using an attempt, then one
  trial decides. An endpoint failing for
  ``METERLY_WEBHOOK_DISABLE_AFTER_SECONDS`` is disabled on the admin topic.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import uvloop
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from confluent_kafka import Consumer as ConfluentConsumer
from confluent_kafka import KafkaException
from prometheus_client import Counter, Gauge, Histogram
from yarl import URL

from processors.kafka.async_producer import AsyncProducer
from processors.kafka.config import aiokafka_security, client_config
from processors.kafka.invalid import DECODE_ERRORS, DeadLetters, invalid_record
from processors.kafka.offset_tracker import OffsetTracker
from processors.kafka.offsets import topic_depth
from processors.runtime import keyring
from processors.runtime.failpoints import failpoint
from processors.runtime.settings import Settings
from processors.tenants.follower import AdminTopic, follow_admin
from processors.webhooks.core.breaker import CircuitBreaker
from processors.webhooks.core.schedule import next_attempt_delay, parse_schedule
from processors.webhooks.core.sealing import SealError, open_secret
from processors.webhooks.core.signing import sign_headers
from processors.webhooks.core.ssrf import address_allowed, parse_networks
from processors.webhooks.resolver import GuardedResolver
from processors.webhooks.store import Attempt, WebhookStore
from schemas import webhooks_v1
from schemas.admin_v1 import WebhookEndpoint
from schemas.rfc3339 import now_text, parse_time
from schemas.topics import ADMIN, WEBHOOK_DEAD_LETTER, WEBHOOK_EVENTS, WEBHOOK_RETRIES, spec_of
from schemas.webhooks_v1 import Delivery, Message
from storage.cassandra import connect

log = logging.getLogger(__name__)

ATTEMPTS = Counter("meterly_webhook_attempts_total", "webhook delivery attempts", ["outcome"])
LATENCY = Histogram("meterly_webhook_attempt_seconds", "webhook attempt duration",
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
DEAD_LETTERED = Counter("meterly_webhook_dead_lettered_total", "deliveries dead-lettered")
DEAD_LETTER_DEPTH = Gauge("meterly_webhook_dead_letter_depth",
                          "deliveries in the dead-letter topic (replayable)")
DEFERRED = Counter("meterly_webhook_deferred_total",
                   "deliveries put back while their endpoint's circuit was open")
OUTCOMES = {o: ATTEMPTS.labels(o) for o in ("delivered", "failed", "dead_lettered")}


def _cid(headers: Sequence[tuple[str, bytes]]) -> str | None:
    for name, value in headers:
        if name == "correlation-id":
            return value.decode()
    return None


def _literal_address(url: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class Batcher:
    """Collects items and writes them together; ``add`` resolves once its item is written.

    The attempt log gets one write per endpoint and flush instead of one per attempt, and a
    delivery is only done (and its offset committable) once its log row is stored.
    """

    def __init__(self, write: Callable[[list[Any]], Awaitable[None]], max_items: int = 2000,
                 max_delay: float = 0.05) -> None:
        self._write = write
        self._max_items = max_items
        self._max_delay = max_delay
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, item: Any) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._items.append(item)
        self._waiters.append(waiter)
        if len(self._items) >= self._max_items:
            self._flush_soon(0)
        elif self._timer is None:
            self._flush_soon(self._max_delay)
        return waiter

    def _flush_soon(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, lambda: loop.create_task(self._flush()) and None)

    async def _flush(self) -> None:
        self._timer = None
        items, waiters = self._items, self._waiters
        self._items, self._waiters = [], []
        if not items:
            return
        try:
            await self._write(items)
        except Exception as exc:  # noqa: BLE001 - handed to every waiter
            for w in waiters:
                if not w.done():
                    w.set_exception(exc)
            return
        for w in waiters:
            if not w.done():
                w.set_result(None)


#: Bytes of a receiver's answer read at most: only its status counts, and reading a small
#: answer to its end lets the connection be used again.
ANSWER_CAP = 64 * 1024


async def _drain(answer: aiohttp.ClientResponse) -> None:
    """Read the answer's body up to ``ANSWER_CAP``; a longer one closes the connection
    instead of being read on (a 400 MB answer costs 64 KiB, not 400 MB)."""
    received = 0
    async for chunk in answer.content.iter_chunked(16 * 1024):
        received += len(chunk)
        if received > ANSWER_CAP:
            answer.close()
            return


class Dispatcher:
    def __init__(self, settings: Settings, admin: AdminTopic, store: WebhookStore,
                 producer: AsyncProducer, http: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.admin = admin
        self.directory = admin.directory
        self.store = store
        self.producer = producer
        self.http = http
        self.clock = clock
        self.rng = rng or random.Random()
        self.schedule = parse_schedule(settings.webhook_retry_schedule)
        self.breaker = CircuitBreaker(cooldown=settings.webhook_breaker_cooldown,
                                      max_cooldown=max(600.0, settings.webhook_breaker_cooldown))
        self.allow = parse_networks(settings.webhook_allow_networks)
        prefix = settings.topic_prefix
        self.retry_topics = [t.full_name(prefix) for t in WEBHOOK_RETRIES]
        self.dead_letter_topic = WEBHOOK_DEAD_LETTER.full_name(prefix)
        self.attempt_log = Batcher(self.store.record_attempts)
        self.message_log = Batcher(self.store.save_messages)
        self._healthy: set[str] = set()
        self._secret_cache: dict[str, tuple[WebhookEndpoint, float, list[str]]] = {}
        self.secret_keys = keyring.load(settings, "secrets")
        self._refusals: dict[str, str | None] = {}
        self._urls: dict[str, URL] = {}

    # ---- one message, fanned out --------------------------------------------------------

    async def handle_message(self, message: Message, correlation_id: str | None = None
                             ) -> None:
        if correlation_id is not None and log.isEnabledFor(logging.DEBUG):
            log.debug("webhook message", extra={"correlation_id": correlation_id,
                                                "message_id": message.id, "type": message.type})
        # Stored for replays while the first attempts go out; both finish before the
        # message's offset may be committed.
        now_ms = int(self.clock() * 1000)
        endpoints = [e for e in self.directory.endpoints_of(message.tenant_id)
                     if e.enabled and message.type in e.event_types]
        stored = self.message_log.add(message)
        if len(endpoints) == 1:
            await self.attempt(Delivery(message, endpoints[0].id, 0, now_ms))
        elif endpoints:
            await asyncio.gather(*(self.attempt(Delivery(message, e.id, 0, now_ms))
                                   for e in endpoints))
        await stored

    # ---- one attempt ----------------------------------------------------------------------

    async def attempt(self, delivery: Delivery) -> None:
        endpoint = self.directory.webhook(delivery.endpoint_id)
        if endpoint is None or endpoint.deleted:
            log.info("delivery dropped: endpoint deleted",
                     extra={"endpoint": delivery.endpoint_id, "message_id": delivery.message.id})
            return
        if not endpoint.enabled:
            # Kept, not lost: replayable from the dead-letter topic once re-enabled.
            await self._dead_letter(replace(delivery, last_error="endpoint disabled"))
            return
        if not self.breaker.allow(endpoint.id):
            await self._defer(delivery, self.breaker.retry_in(endpoint.id))
            return
        number = delivery.attempts + 1
        started = time.monotonic()
        status, error = await self._post(endpoint, delivery.message)
        elapsed = time.monotonic() - started
        LATENCY.observe(elapsed)
        delivered = status is not None and 200 <= status < 300
        at = datetime.fromtimestamp(self.clock(), UTC)
        delay = None if delivered else next_attempt_delay(number, self.schedule, self.rng)
        outcome = "delivered" if delivered else ("failed" if delay is not None
                                                 else "dead_lettered")
        OUTCOMES[outcome].inc()
        logged = self.attempt_log.add(Attempt(
            delivery.message.tenant_id, endpoint.id, delivery.message.id, delivery.message.type,
            number, at, outcome, status, int(elapsed * 1000), error))
        if delivered:
            self.breaker.record_success(endpoint.id)
            if endpoint.id not in self._healthy:
                await self._healthy_now(endpoint, at)
            await logged
            return
        self.breaker.record_failure(endpoint.id)
        failed = replace(delivery, attempts=number, last_error=error)
        if delay is None:
            await asyncio.gather(logged, self._dead_letter(failed))
        else:
            due = int((self.clock() + delay.total_seconds()) * 1000)
            await asyncio.gather(logged, self.producer.send(
                self.retry_topics[number - 1], webhooks_v1.encode_delivery(
                    replace(failed, due_ms=due)), key=endpoint.id.encode()))
        await self._failing_now(endpoint, at)

    async def _defer(self, delivery: Delivery, wait: float) -> None:
        """The endpoint's circuit is open: the delivery waits for it without using an
        attempt, in the first retry topic whose delay covers the wait (so that topic stays
        close to due order)."""
        wait = max(wait, 0.5) * self.rng.uniform(1.0, 1.2)
        step = next((i for i, d in enumerate(self.schedule) if d.total_seconds() >= wait),
                    len(self.schedule) - 1)
        due = int((self.clock() + wait) * 1000)
        DEFERRED.inc()
        await self.producer.send(self.retry_topics[step], webhooks_v1.encode_delivery(
            replace(delivery, due_ms=due)), key=delivery.endpoint_id.encode())

    async def _post(self, endpoint: WebhookEndpoint, message: Message
                    ) -> tuple[int | None, str | None]:
        now = self.clock()
        try:
            secrets = self._secrets(endpoint, now)
        except SealError as exc:
            # Not the receiver's fault and not a bad record: retried, so it is sent once the
            # key is back in METERLY_SECRET_KEYS; dead-lettered (replayable) if it never is.
            return None, str(exc)
        if not secrets:
            return None, "no signing secret in force: rotate the endpoint's secret"
        refusal = self._refusal(endpoint.url)
        if refusal is not None:
            return None, refusal
        body = message.body()
        headers = sign_headers(secrets, message.id, int(now), body)
        try:
            async with self.http.post(self._url(endpoint.url), data=body, headers=headers,
                                      allow_redirects=False) as answer:
                await _drain(answer)
                if 200 <= answer.status < 300:
                    return answer.status, None
                return answer.status, f"HTTP {answer.status}"
        except TimeoutError:
            return None, "timeout"
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]

    def _secrets(self, endpoint: WebhookEndpoint, now: float) -> list[str]:
        """The secrets in force, opened (``SealError`` if one cannot be), cached per endpoint
        version until the next one expires."""
        cached = self._secret_cache.get(endpoint.id)
        if cached is not None and cached[0] is endpoint and now < cached[1]:
            return cached[2]
        keys = self.secret_keys.by_id()
        expiries = {open_secret(s.secret, endpoint.id, keys):
                    (parse_time(s.expires_at).timestamp() if s.expires_at else float("inf"))
                    for s in endpoint.secrets
                    if s.expires_at is None or parse_time(s.expires_at).timestamp() > now}
        live = [secret for secret, until in expiries.items() if until > now]
        valid_until = min((u for u in expiries.values() if u > now), default=float("inf"))
        self._secret_cache[endpoint.id] = (endpoint, valid_until, live)
        return live

    def _url(self, url: str) -> URL:
        """Parsed once per URL: aiohttp parses a str URL on every request."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = URL(url)
        return parsed

    def _refusal(self, url: str) -> str | None:
        """Why the SSRF guard refuses an IP-literal URL (aiohttp connects to a literal
        without asking the guarded resolver); None when allowed or not a literal."""
        if url not in self._refusals:
            literal = _literal_address(url)
            refused = literal is not None and not address_allowed(literal, self.allow)
            self._refusals[url] = (f"refused: {literal} is not a public address" if refused
                                   else None)
        return self._refusals[url]

    async def _dead_letter(self, delivery: Delivery) -> None:
        DEAD_LETTERED.inc()
        await self.producer.send(self.dead_letter_topic, webhooks_v1.encode_delivery(delivery),
                                 key=delivery.endpoint_id.encode())

    async def _healthy_now(self, endpoint: WebhookEndpoint, at: datetime) -> None:
        if endpoint.id not in self._healthy:
            await self.store.mark_healthy(endpoint.tenant_id, endpoint.id, at)
            self._healthy.add(endpoint.id)

    async def _failing_now(self, endpoint: WebhookEndpoint, at: datetime) -> None:
        self._healthy.discard(endpoint.id)
        since = await self.store.mark_failing(endpoint.tenant_id, endpoint.id, at)
        limit = timedelta(seconds=self.settings.webhook_disable_after_seconds)
        if at - since >= limit and endpoint.enabled:
            log.warning("webhook endpoint disabled", extra={
                "endpoint": endpoint.id, "failing_since": since.isoformat()})
            await self.admin.publish(replace(
                endpoint, enabled=False, updated_at=now_text(),
                disabled_reason=f"every attempt failed since {since.isoformat()}"))


class Consumer:
    """Feeds the dispatcher: concurrency, due times, and commits in order."""

    def __init__(self, settings: Settings, dispatcher: Dispatcher) -> None:
        assert settings.kafka_bootstrap
        self.dispatcher = dispatcher
        prefix = settings.topic_prefix
        self.prefix = prefix
        self.dead_letters = DeadLetters(settings.kafka_bootstrap, prefix, "webhook-dispatcher")
        self.events_topic = WEBHOOK_EVENTS.full_name(prefix)
        self.topics = [self.events_topic, *dispatcher.retry_topics]
        self.kafka = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=f"{prefix}webhook-dispatcher",
            enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed", max_poll_records=1000,
            session_timeout_ms=10_000, heartbeat_interval_ms=3_000,
            **aiokafka_security(settings))
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._watermarks = ConfluentConsumer({**client_config(settings.kafka_bootstrap),
                                              "group.id": "meterly-dead-letter-depth-unused"})
        self.slots = asyncio.Semaphore(settings.webhook_concurrency)
        self.running = True
        self.failed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused: dict[TopicPartition, asyncio.TimerHandle] = {}

    async def run(self) -> None:
        tracker, paused, consumer = self.tracker, self._paused, self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
                # Hand over what is done, so the next owner repeats only what was in flight.
                try:
                    await consumer.commit()
                except Exception:
                    log.warning("commit before a rebalance failed", exc_info=True)
                for tp in revoked:
                    tracker.forget(tp)
                    timer = paused.pop(tp, None)
                    if timer is not None:
                        timer.cancel()

            async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
                return None

        self.kafka.subscribe(self.topics, listener=Listener())
        await self.kafka.start()
        last_commit = time.monotonic()
        last_depth = 0.0
        try:
            while self.running:
                batches = await self.kafka.getmany(timeout_ms=200, max_records=1000)
                for tp, records in batches.items():
                    for record in records:
                        if tp in self._paused:
                            break
                        if not await self._take(tp, record.offset, record.value,
                                                record.headers, record.key):
                            break
                if time.monotonic() - last_commit > 1.0:
                    await self.commit()
                    last_commit = time.monotonic()
                if time.monotonic() - last_depth > 10.0:
                    last_depth = time.monotonic()
                    asyncio.get_running_loop().run_in_executor(None, self._measure_depth)
        finally:
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=30)
            await self.commit()
            await self.kafka.stop()

    async def _take(self, tp: TopicPartition, offset: int, value: bytes | None,
                    headers: Sequence[tuple[str, bytes]] = (), key: bytes | None = None) -> bool:
        """Start handling one record; False when its partition must wait (not due yet)."""
        if value is None:
            return True
        try:
            decoded: webhooks_v1.Message | webhooks_v1.Delivery | None = (
                webhooks_v1.decode_message(value) if tp.topic == self.events_topic
                else webhooks_v1.decode_delivery(value))
        except DECODE_ERRORS as exc:
            place = f"{tp.topic}/{tp.partition}/{offset}"
            invalid_record(spec_of(tp.topic, self.prefix), place, exc,
                           self.dead_letters.of_record(place, key, value, list(headers)))
            decoded = None
        if decoded is None:
            # Its offset is committed only once the dead letter is acknowledged.
            work: Awaitable[None] = asyncio.get_running_loop().run_in_executor(
                None, self.dead_letters.flush)
        elif isinstance(decoded, webhooks_v1.Message):
            work = self.dispatcher.handle_message(decoded, _cid(headers))
        else:
            delivery = decoded
            wait = delivery.due_ms / 1000 - self.dispatcher.clock()
            if wait > 0:
                self._hold(tp, offset, wait)
                return False
            work = self.dispatcher.attempt(delivery)
        await self.slots.acquire()
        self.tracker.started(tp, offset)
        task = asyncio.get_running_loop().create_task(self._run(tp, offset, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, tp: TopicPartition, offset: int, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            # Its offset must not be committed: exit and let the restart redeliver it.
            log.exception("webhook delivery failed to hand on; exiting for a restart")
            self.running = False
            self.failed = True
        else:
            self.tracker.finished(tp, offset)
        finally:
            self.slots.release()

    def _measure_depth(self) -> None:
        try:
            DEAD_LETTER_DEPTH.set(topic_depth(self._watermarks,
                                              self.dispatcher.dead_letter_topic))
        except KafkaException as exc:
            # A metric must never stop deliveries (a broker may be restarting).
            log.warning("could not measure the dead-letter depth: %s", exc)

    def _hold(self, tp: TopicPartition, offset: int, wait: float) -> None:
        """Pause ``tp`` at ``offset`` until that record is due (nothing sleeps)."""
        self.kafka.seek(tp, offset)
        self.kafka.pause(tp)
        self.tracker.rewind(tp, offset)
        loop = asyncio.get_running_loop()

        def resume() -> None:
            self._paused.pop(tp, None)
            if tp in self.kafka.assignment():
                self.kafka.resume(tp)

        self._paused[tp] = loop.call_later(min(wait, 3600.0), resume)

    async def commit(self) -> None:
        offsets = self.tracker.committable()
        assigned = self.kafka.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if offsets:
            failpoint("webhook-dispatcher.before-commit")  # 2 to 5 done for these, 6 not
            await self.kafka.commit(offsets)
            self.tracker.committed(offsets)


async def serve(settings: Settings) -> None:
    assert settings.kafka_bootstrap
    assert settings.cassandra_hosts
    producer = AsyncProducer(settings.kafka_bootstrap)
    _directory, admin = follow_admin(settings.kafka_bootstrap,
                                     ADMIN.full_name(settings.topic_prefix), producer)
    await asyncio.get_running_loop().run_in_executor(None, admin.start)
    cluster, session = connect(settings.cassandra_hosts, security=settings.cassandra_security)
    resolver = GuardedResolver(parse_networks(settings.webhook_allow_networks))
    connector = aiohttp.TCPConnector(limit=settings.webhook_concurrency, limit_per_host=64,
                                     resolver=resolver, ttl_dns_cache=10)
    timeout = aiohttp.ClientTimeout(total=settings.webhook_attempt_timeout,
                                    connect=settings.webhook_connect_timeout,
                                    sock_read=settings.webhook_read_timeout)
    # No cookies, no decompression: a receiver's answer is only its status code.
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                                     headers={"User-Agent": "Meterly-Webhooks/1"}) as http:
        dispatcher = Dispatcher(settings, admin, WebhookStore(session,
                                                             settings.cassandra_keyspace),
                                producer, http)
        consumer = Consumer(settings, dispatcher)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(consumer, "running", False))
        try:
            await consumer.run()
        finally:
            admin.stop()
            producer.close()
            cluster.shutdown()
        if consumer.failed:
            raise SystemExit(1)


def run_worker(settings: Settings) -> None:
    # uvloop: the dispatcher is an HTTP client doing thousands of small requests a second,
    # where the event loop's own cost shows.
    uvloop.run(serve(settings))
