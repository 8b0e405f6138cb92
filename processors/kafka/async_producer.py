"""An asyncio face for confluent-kafka's producer: ``await send(...)`` resolves on the broker's ack.

The producer is idempotent with acks=all, so an acknowledged record is on every in-sync
replica and a retried send never duplicates it. One thread serves delivery reports and
hands each result to the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from processors.kafka.config import client_config


class DeliveryFailed(RuntimeError):  # noqa: N818 - names the outcome callers handle
    pass


class AsyncProducer:
    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._producer = Producer({
            **client_config(bootstrap),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "compression.type": "lz4",
            "message.max.bytes": 4 * 2**20,
            # A request waits at most this long for Kafka before it is answered 503.
            "delivery.timeout.ms": 10_000,
            **config,
        })
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="kafka-delivery", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: list[tuple[str, str | bytes | None]] | None = None) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            def settle() -> None:
                if future.done():
                    return
                if err is not None:
                    future.set_exception(DeliveryFailed(str(err)))
                else:
                    future.set_result(msg.offset() or 0)
            loop.call_soon_threadsafe(settle)

        while True:
            try:
                self._producer.produce(topic, value, key=key, headers=headers,
                                       on_delivery=delivered)
                break
            except BufferError:
                # The local queue is full: back-pressure, not failure.
                await asyncio.sleep(0.005)
            except KafkaException as exc:
                raise DeliveryFailed(str(exc)) from exc
        return await future

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._running = False
        self._thread.join(timeout)
