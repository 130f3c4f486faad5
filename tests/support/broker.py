"""RabbitMQ for the tests that need it: BROKER_URL, else the local default; skipped when none answers,
except in CI (CI set), where a missing broker fails the run."""

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest

from tests.support.required import require_answer

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture(scope="session")
def broker_url() -> str:
    url = os.environ.get("BROKER_URL", DEFAULT_BROKER_URL)

    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=3)
        await connection.close()

    require_answer(probe, f"no RabbitMQ answers at {url} (set BROKER_URL)")
    return url


class Consumer:
    """An exclusive queue bound to the users exchange; collects the envelopes, their properties and the
    time each arrived (monotonic)."""

    def __init__(self) -> None:
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []
        self.arrivals: list[tuple[float, dict[str, Any]]] = []  # parsed once, as they arrive
        self._arrived = asyncio.Event()

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.messages.append(message)
        self.arrivals.append((time.monotonic(), orjson.loads(message.body)))
        self._arrived.set()
        await message.ack()

    def arrivals_of(self, subjects: set[str] | None = None) -> list[tuple[float, dict[str, Any]]]:
        return [(t, e) for t, e in self.arrivals if subjects is None or e["subject"] in subjects]

    def envelopes(self, subjects: set[str] | None = None) -> list[dict[str, Any]]:
        return [e for _, e in self.arrivals_of(subjects)]

    async def wait_for(
        self, count: int, subjects: set[str] | None = None, timeout: float = 20
    ) -> list[dict[str, Any]]:
        """Wait until `count` distinct events (by id: delivery is at least once) have arrived."""
        async with asyncio.timeout(timeout):
            while len({e["id"] for e in self.envelopes(subjects)}) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.envelopes(subjects)


@pytest.fixture
async def consumer(broker_url: str) -> AsyncIterator[Consumer]:
    connection = await aio_pika.connect(broker_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange("users", aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="user.#")
    consumer = Consumer()
    await queue.consume(consumer._on_message)
    yield consumer
    await connection.close()
