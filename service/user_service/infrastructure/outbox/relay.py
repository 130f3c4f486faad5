"""The outbox relay: publishes committed events to RabbitMQ, in commit order, at least once.

- One relay is active at a time: it holds a PostgreSQL advisory lock on its own connection; the others
  wait and take over within seconds when that connection dies with its process.
- It wakes on the NOTIFY sent by each committing transaction, and polls as a fallback.
- It publishes on a channel with publisher confirms and marks a row published only after the broker
  confirmed it. A user's next event is published only after the previous one was confirmed (`_by_user`),
  so an event the broker rejects never lands behind a later event of its user. A failure leaves the
  rest for the next attempt, after an exponential backoff capped at a few seconds; a row may so be
  delivered twice, never zero times.
- Published rows are deleted after the retention period, in bounded batches between publishing rounds
  until none is left, so the purge keeps up with any rate the relay publishes at; expired idempotency
  keys go in the same step, once the outbox's batches are done.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika
import asyncpg
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from user_service.infrastructure.db.database import UNAVAILABLE_ERRORS, asyncpg_dsn
from user_service.infrastructure.db.idempotency import purge_expired_keys
from user_service.infrastructure.db.tables import OUTBOX_CHANNEL
from user_service.infrastructure.outbox.envelope import CONTENT_TYPE, SOURCE
from user_service.infrastructure.outbox.status import BrokerState, RelayStatus
from user_service.infrastructure.telemetry import metrics

log = structlog.get_logger(__name__)
tracer = trace.get_tracer("user_service.outbox")

EXCHANGE = "users"
EXCHANGE_TYPE = aio_pika.ExchangeType.TOPIC  # durable; the routing key is the event type
DELIVERY_MODE = aio_pika.DeliveryMode.PERSISTENT
LOCK_KEY = 0x75736572  # "user": the advisory lock that elects the active relay
_PENDING = (
    "SELECT position, id, type, aggregate_id, payload::text AS payload, traceparent, created_at "
    "FROM outbox WHERE published_at IS NULL ORDER BY position LIMIT $1"
)
_MARK = "UPDATE outbox SET published_at = clock_timestamp() WHERE position = ANY($1::bigint[])"
# One bounded batch of expired rows per statement, oldest first (ix_outbox_published_at); the relay runs
# batches between its publishing rounds until a batch comes back short.
_PURGE = (
    "DELETE FROM outbox WHERE position IN (SELECT position FROM outbox "
    "WHERE published_at < clock_timestamp() - make_interval(secs => $1) ORDER BY published_at LIMIT $2)"
)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    database_url: str
    broker_url: str
    batch_size: int = 500
    poll_interval: float = 1.0
    retention_seconds: float = 24 * 3600
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    confirm_timeout: float = 10.0
    lock_retry_interval: float = 1.0
    purge_interval: float = 60.0
    purge_batch_size: int = 5000


class PublishIncomplete(Exception):
    pass


# Failures the relay expects (logged briefly); any other is logged with its traceback, and retried too.
_RETRYABLE: tuple[type[BaseException], ...] = (
    *UNAVAILABLE_ERRORS,
    aio_pika.exceptions.AMQPError,
    PublishIncomplete,
)


class Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.delay = initial

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self.delay = self.initial


class OutboxRelay:
    def __init__(self, settings: RelaySettings, status: RelayStatus | None = None) -> None:
        self.settings = settings
        self.status = status or RelayStatus(enabled=True)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self._gauges = metrics.relay_gauges()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        """Until stopped: connect, win the lock, publish; on any failure back off and start over."""
        log.info("outbox relay started")
        while not self._stop.is_set():
            try:
                await self._session()
            except Exception as exc:  # the relay outlives every failure of a session, expected or not
                if isinstance(exc, aio_pika.exceptions.AMQPError | PublishIncomplete):
                    self.status.broker = BrokerState.DOWN
                delay = self._backoff.next()
                if isinstance(exc, _RETRYABLE):
                    log.warning("outbox relay interrupted", error=_describe(exc), retry_in_s=delay)
                else:
                    log.warning("outbox relay failed unexpectedly", retry_in_s=delay, exc_info=exc)
                await self._sleep(delay)
            finally:
                self.status.active = False
                self._gauges.active.set(0)
        log.info("outbox relay stopped")

    async def _session(self) -> None:
        try:
            broker = await aio_pika.connect(self.settings.broker_url, timeout=5)
        except Exception:  # refused, reset, timed out, or (under uvloop) StopAsyncIteration
            self.status.broker = BrokerState.DOWN
            raise
        try:
            self.status.broker = BrokerState.OK
            self._gauges.broker_connected.set(1)
            channel = await broker.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(EXCHANGE, EXCHANGE_TYPE, durable=True)
            conn = await asyncpg.connect(asyncpg_dsn(self.settings.database_url), timeout=5)
            try:
                await self._lead(conn, broker, channel, exchange)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
        finally:
            self._gauges.broker_connected.set(0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broker.close(), 2)

    async def _lead(
        self,
        conn: asyncpg.Connection,
        broker: AbstractConnection,
        channel: AbstractChannel,
        exchange: AbstractExchange,
    ) -> None:
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
            if self._stop.is_set():
                return
            await self._sleep(self.settings.lock_retry_interval)
            if broker.is_closed or channel.is_closed:
                raise aio_pika.exceptions.AMQPConnectionError("broker connection lost")
        self.status.active = True
        self._gauges.active.set(1)
        log.info("outbox relay is active")
        await conn.add_listener(OUTBOX_CHANNEL, self._notified)
        next_purge, purging = 0.0, False
        while not self._stop.is_set():
            if broker.is_closed or channel.is_closed:
                raise aio_pika.exceptions.AMQPConnectionError("broker connection lost")
            self._wake.clear()
            published = await self._publish_batch(conn, exchange)
            self._backoff.reset()
            self.status.broker = BrokerState.OK
            if purging or time.monotonic() >= next_purge:
                purging = await self._purge_batch(conn)
                if not purging:
                    next_purge = time.monotonic() + self.settings.purge_interval
            if published < self.settings.batch_size and not purging:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)

    async def _purge_batch(self, conn: asyncpg.Connection) -> bool:
        """Delete one batch of rows published longer ago than the retention; True while more remain."""
        status = await conn.execute(_PURGE, self.settings.retention_seconds, self.settings.purge_batch_size)
        deleted = int(status.rsplit(" ", 1)[-1])
        if deleted:
            metrics.OUTBOX_PURGED.inc(deleted)
        if deleted >= self.settings.purge_batch_size:
            return True
        await purge_expired_keys(conn)
        return False

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _publish_batch(self, conn: asyncpg.Connection, exchange: AbstractExchange) -> int:
        rows = await conn.fetch(_PENDING, self.settings.batch_size)
        if not rows:
            return 0
        started = time.perf_counter()
        confirmed: list[asyncpg.Record] = []

        async def publish_in_order(events: list[asyncpg.Record]) -> None:
            for row in events:  # a user's next event only once the broker confirmed the previous one
                await self._publish(exchange, row)
                confirmed.append(row)

        # One channel, every user's events at once; each user's in commit order.
        results = await asyncio.gather(
            *(publish_in_order(events) for events in _by_user(rows)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if confirmed:
            await conn.execute(_MARK, [row["position"] for row in confirmed])
            now = datetime.now(UTC)
            for row in confirmed:
                metrics.OUTBOX_PUBLISHED.labels(row["type"]).inc()
                metrics.OUTBOX_COMMIT_TO_CONFIRM.observe((now - row["created_at"]).total_seconds())
        metrics.OUTBOX_PUBLISH_DURATION.observe(time.perf_counter() - started)
        if failures:
            metrics.OUTBOX_FAILURES.inc(len(rows) - len(confirmed))
            raise PublishIncomplete(
                f"{len(rows) - len(confirmed)} of {len(rows)} events not confirmed: {_describe(failures[0])}"
            )
        return len(rows)

    async def _publish(self, exchange: AbstractExchange, row: asyncpg.Record) -> None:
        stored = propagate.extract({"traceparent": row["traceparent"]}) if row["traceparent"] else None
        with tracer.start_as_current_span(
            f"publish {EXCHANGE}",  # `{messaging.operation.name} {destination}`
            context=stored,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.name": "publish",
                "messaging.operation.type": "send",
                "messaging.destination.name": EXCHANGE,
                "messaging.rabbitmq.destination.routing_key": row["type"],
                "messaging.message.id": str(row["id"]),
            },
        ):
            headers: dict[str, str] = {}
            propagate.inject(headers)
            if "traceparent" not in headers and row["traceparent"]:
                headers["traceparent"] = row["traceparent"]
            message = aio_pika.Message(
                body=row["payload"].encode(),
                content_type=CONTENT_TYPE,
                delivery_mode=DELIVERY_MODE,
                message_id=str(row["id"]),
                timestamp=row["created_at"],
                type=row["type"],
                app_id=SOURCE,
                headers=headers,  # type: ignore[arg-type]
            )
            await exchange.publish(message, routing_key=row["type"], timeout=self.settings.confirm_timeout)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)


def _by_user(rows: list[asyncpg.Record]) -> list[list[asyncpg.Record]]:
    """The batch's events per user, each list in commit order.

    An event the broker rejects (or never confirms) so has no later event of its user on the broker: it is
    published again, and its user's later events after it, on the next attempt; the other users' events
    go on meanwhile.
    """
    users: dict[object, list[asyncpg.Record]] = {}
    for row in rows:
        users.setdefault(row["aggregate_id"], []).append(row)
    return list(users.values())


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
