"""Running the outbox relay: inside the API process (BROKER_URL set) or alone (`user-service relay`)."""

import asyncio
import contextlib
import signal

import structlog

from user_service.infrastructure.outbox.relay import OutboxRelay, RelaySettings
from user_service.infrastructure.outbox.status import RelayStatus
from user_service.infrastructure.telemetry.metrics_server import MetricsServer
from user_service.infrastructure.telemetry.sampling import Trust
from user_service.infrastructure.telemetry.tracing import TracePolicy, configure_tracing, shutdown_tracing
from user_service.main.settings import Settings

log = structlog.get_logger(__name__)


def trace_policy(settings: Settings) -> TracePolicy:
    return TracePolicy(
        sample_ratio=settings.trace_sample_ratio,
        slow_seconds=settings.trace_slow_seconds,
        trust=Trust(settings.traceparent_trust.value),
        trust_per_second=settings.traceparent_trust_limit,
    )


def make_relay(settings: Settings, status: RelayStatus) -> OutboxRelay:
    assert settings.relay_url is not None
    assert settings.broker_url is not None
    if settings.relay_database_url is None and settings.db_statement_cache_size == 0:
        # A statement cache of 0 is the setting for a transaction pooler, where the relay's advisory
        # lock and LISTEN would hold on whichever server connection the pooler lent, not on a session.
        log.warning(
            "DB_STATEMENT_CACHE_SIZE=0 suggests DATABASE_URL is a transaction pooler: set RELAY_DATABASE_URL "
            "to a direct connection for the relay's advisory lock and LISTEN"
        )
    return OutboxRelay(
        RelaySettings(
            database_url=settings.relay_url,
            broker_url=settings.broker_url,
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval,
            retention_seconds=settings.outbox_retention_hours * 3600,
        ),
        status,
    )


class BackgroundRelay:
    """The relay as a task of the API process, stopped with it."""

    def __init__(self, relay: OutboxRelay, stop_timeout: float) -> None:
        self.relay = relay
        self._stop_timeout = stop_timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.relay.run(), name="outbox-relay")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The relay only ends when stopped; if it ever ends otherwise, say so and start it again."""
        if task.cancelled() or self.relay.stopping:
            return
        log.error("outbox relay ended unexpectedly; restarting it", exc_info=task.exception())
        self.start()

    async def stop(self) -> None:
        if self._task is None:
            return
        self.relay.stop()
        try:
            await asyncio.wait_for(self._task, self._stop_timeout)
        except TimeoutError:
            log.warning("outbox relay did not stop in time; its unconfirmed batch stays pending")


def run_relay(settings: Settings) -> None:
    """`user-service relay`: until SIGTERM or Ctrl-C, with /metrics and /healthcheck on RELAY_METRICS_PORT."""
    if settings.telemetry_enabled:
        configure_tracing(settings.environment, policy=trace_policy(settings))

    async def main() -> None:
        relay = make_relay(settings, RelayStatus(enabled=True))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, relay.stop)
        server = None
        if settings.relay_metrics_port:
            server = MetricsServer(settings.host, settings.relay_metrics_port)
            await server.start()
        try:
            await relay.run()
        finally:
            if server is not None:
                await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    shutdown_tracing()
