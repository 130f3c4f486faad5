"""The scale-out rehearsal: real parts on one machine, started once for the folder and torn down after.

    HAProxy (health check: /healthcheck/ready)
      ├── instance 0 ─┐
      ├── instance 1 ─┼── PgBouncer (transaction mode) ── PostgreSQL 15 primary ── streaming replica
      └── instance 2 ─┘   DB_STATEMENT_CACHE_SIZE=0        ↑ RELAY_DATABASE_URL    ↑ DATABASE_READ_URL
                          relays → RabbitMQ

Every server listens on 127.0.0.1 and lives in a temporary folder. Each drill leaves the rehearsal as
it found it (`healthy()` restores it and waits until every part answers).
"""

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from loadtest.cluster import HAProxy, MissingTool, PgBouncer, Postgres
from loadtest.service_process import ServiceProcess
from tests.support.required import unavailable
from user_service.infrastructure.db import migrations

INSTANCES = 3
DATABASE = "users"
TOKEN = "x-consistency-token"


class Rehearsal:
    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.primary = Postgres()
        self.replica = Postgres(replica_of=self.primary)
        self.bouncer = PgBouncer(self.primary)
        self.instances: list[ServiceProcess] = []
        self.balancer: HAProxy | None = None

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.bouncer.url(DATABASE),
            "DB_STATEMENT_CACHE_SIZE": "0",
            "DATABASE_READ_URL": self.url(self.replica),
            "RELAY_DATABASE_URL": self.url(self.primary),
            "BROKER_URL": self.broker_url,
            "OUTBOX_POLL_INTERVAL": "0.2",
            "LOG_LEVEL": "info",
            "SHUTDOWN_TIMEOUT": "3",
        }

    @staticmethod
    def url(server: Postgres) -> str:
        return f"postgresql://postgres@127.0.0.1:{server.port}/{DATABASE}"

    @property
    def url_of_balancer(self) -> str:
        assert self.balancer is not None
        return self.balancer.url

    def start(self) -> None:
        self.primary.start()
        asyncio.run(self.primary.fetchval(f"CREATE DATABASE {DATABASE}"))
        migrations.upgrade(self.url(self.primary))
        self.replica.start()
        self.bouncer.start()
        self.instances = [ServiceProcess(self.env()) for _ in range(INSTANCES)]
        for instance in self.instances:
            instance.start(timeout=90)
        self.balancer = HAProxy([i.port for i in self.instances]).start()
        self.wait_ready()

    def stop(self) -> None:
        for part in (self.balancer, *self.instances):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()  # type: ignore[union-attr]
        for instance in self.instances:
            instance.log_path.unlink(missing_ok=True)
        for server in (self.bouncer, self.replica, self.primary):
            with contextlib.suppress(Exception):
                server.stop()

    def restart_instance(self, n: int) -> None:
        """A new process for instance `n` (after a kill), on its port, so the balancer finds it again."""
        old = self.instances[n]
        if old.process is not None and old.process.poll() is None:
            old.stop()
        self.instances[n] = ServiceProcess(self.env(), port=old.port).start(timeout=90)

    def healthy(self) -> None:
        """Every part running and every instance ready with reads on the replica."""
        for n, instance in enumerate(self.instances):
            if instance.process is None or instance.process.poll() is not None:
                self.restart_instance(n)
        if not self.replica.running:
            self.replica.resume()
        asyncio.run(self.replica.fetchval("SELECT pg_wal_replay_resume()"))
        if not (self.bouncer.dir / "pgbouncer.pid").exists():
            self.bouncer.start()
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = [readiness(i.url) for i in self.instances]
            if all(s is not None and s["checks"]["database_replica"] == "ok" for s in states):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the instances are not ready: {states}")
            time.sleep(0.2)
        while not balancer_sees(self.url_of_balancer, len(self.instances)):
            if time.monotonic() > deadline:
                raise TimeoutError("the balancer does not route to every instance")
            time.sleep(0.2)

    def leader(self) -> int | None:
        """The instance whose relay holds the lock, from each one's metrics."""
        for n, instance in enumerate(self.instances):
            with contextlib.suppress(httpx.HTTPError):
                metrics = httpx.get(f"{instance.url}/metrics", timeout=2).text
                if "\noutbox_relay_active 1.0" in metrics:
                    return n
        return None

    def log_lines(self, n: int) -> list[dict[str, Any]]:
        lines = self.instances[n].output().splitlines()
        return [orjson.loads(line) for line in lines if line.startswith("{")]


def readiness(url: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{url}/healthcheck/ready", timeout=2)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]


def balancer_sees(url: str, count: int) -> bool:
    """Whether `count` requests in a row through the balancer reach `count` different instances."""
    seen = set()
    with httpx.Client(base_url=url, timeout=2) as client:
        for _ in range(count * 2):
            try:
                response = client.get("/metrics")
            except httpx.HTTPError:
                return False
            for line in response.text.splitlines():
                if line.startswith("process_start_time_seconds"):
                    seen.add(line)
    return len(seen) == count


@pytest.fixture(scope="session")
def rehearsal(broker_url: str) -> Iterator[Rehearsal]:
    try:
        setup = Rehearsal(broker_url)
    except MissingTool as exc:
        unavailable(str(exc))
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


@pytest.fixture
def cluster(rehearsal: Rehearsal) -> Rehearsal:
    """The rehearsal, every part running, before the test."""
    rehearsal.healthy()
    return rehearsal


async def wait_replayed(rehearsal: Rehearsal, timeout: float = 10) -> None:
    """Until the replica has replayed everything the primary has written now."""
    target = await rehearsal.primary.fetchval("SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + timeout
    while True:
        replayed = await rehearsal.replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", target)
        if replayed:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the replica does not catch up")
        await asyncio.sleep(0.02)


class Session:
    """A client's consistency token: taken from each write's answer, sent with every request after."""

    def __init__(self) -> None:
        self.token: str | None = None

    async def on_request(self, request: httpx.Request) -> None:
        if self.token is not None and TOKEN not in request.headers:
            request.headers[TOKEN] = self.token

    async def on_response(self, response: httpx.Response) -> None:
        if token := response.headers.get(TOKEN):
            self.token = token


def session_client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client that reads its own writes: it echoes the latest `X-Consistency-Token`."""
    session = Session()
    return httpx.AsyncClient(
        base_url=base_url,
        event_hooks={"request": [session.on_request], "response": [session.on_response]},
        **kwargs,
    )
