"""The broker goes away under load: the API does not notice (no errors, latency as before), the events
wait in the outbox and all arrive once the broker is back."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from loadtest.service_process import ServiceProcess
from loadtest.traffic import Outcome, send
from tests.support.broker import Consumer
from tests.support.evidence import percentile, report
from tests.support.fault_proxy import FaultProxy
from tests.support.private_db import PrivateDatabase

pytestmark = [pytest.mark.broker, pytest.mark.slow]

REQUESTS = 300
CONCURRENCY = 4
OUTAGE_S = 3.0
DELIVER_WITHIN_S = 20.0
PENDING = "SELECT count(*) FROM outbox WHERE published_at IS NULL"


@pytest.fixture
def broker_proxy(broker_url: str) -> Iterator[FaultProxy]:
    parts = urlsplit(broker_url)
    with FaultProxy((parts.hostname or "127.0.0.1", parts.port or 5672)) as proxy:
        yield proxy


def through(proxy: FaultProxy, broker_url: str) -> str:
    parts = urlsplit(broker_url)
    return parts._replace(netloc=f"{parts.netloc.rsplit('@', 1)[0]}@{proxy.address}").geturl()


async def creates(client: httpx.AsyncClient, count: int, tag: str) -> list[Outcome]:
    queue = iter(range(count))

    async def worker() -> list[Outcome]:
        done = []
        for i in queue:
            body = {"username": f"{tag}{i}_{uuid.uuid4().hex[:6]}", "first_name": "Lo", "last_name": "Ad"}
            done.append(await send(client, "POST", "/users/", body))
        return done

    return [o for batch in await asyncio.gather(*(worker() for _ in range(CONCURRENCY))) for o in batch]


async def wait_until_broker(client: httpx.AsyncClient, state: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await client.get("/healthcheck/ready")).json()["checks"]["broker"] == state:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the relay did not report the broker {state} within {timeout} s")


async def wait_until_published(db: PrivateDatabase, timeout: float = 10) -> object:
    deadline = time.monotonic() + timeout
    while (left := await db.fetchval(PENDING)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return left


@pytest.fixture
def service(
    private_db: PrivateDatabase, broker_url: str, broker_proxy: FaultProxy
) -> Iterator[ServiceProcess]:
    env = {
        "DATABASE_URL": private_db.url,
        "BROKER_URL": through(broker_proxy, broker_url),
        "OUTBOX_POLL_INTERVAL": "0.2",
        "LOG_LEVEL": "warning",
    }
    with ServiceProcess(env) as process:
        yield process


async def test_broker_outage_does_not_slow_the_api(
    service: ServiceProcess, private_db: PrivateDatabase, broker_proxy: FaultProxy
) -> None:
    async with httpx.AsyncClient(base_url=service.url) as client:
        await wait_until_broker(client, "ok")
        await creates(client, 100, "warm")
        normal = await creates(client, REQUESTS, "up")
        broker_proxy.cut()
        await wait_until_broker(client, "down")
        cut = await creates(client, REQUESTS, "down")
        pending = await private_db.fetchval(PENDING)

    errors = [str(o) for o in normal + cut if o.status != 201]
    p50_up, p95_up = (
        percentile([o.elapsed for o in normal], 0.5),
        percentile([o.elapsed for o in normal], 0.95),
    )
    p50_down, p95_down = percentile([o.elapsed for o in cut], 0.5), percentile([o.elapsed for o in cut], 0.95)
    report(
        "broker outage latency",
        requests=2 * REQUESTS,
        errors=len(errors),
        p50_up_ms=round(p50_up * 1000, 1),
        p95_up_ms=round(p95_up * 1000, 1),
        p50_down_ms=round(p50_down * 1000, 1),
        p95_down_ms=round(p95_down * 1000, 1),
        pending=pending,
    )
    assert errors == []
    assert p95_down < 3 * p95_up + 0.050, (p95_down, p95_up)
    assert pending >= REQUESTS  # the events of the outage wait in the outbox


async def test_events_of_a_broker_outage_all_arrive_after_it(
    service: ServiceProcess, private_db: PrivateDatabase, broker_proxy: FaultProxy, consumer: Consumer
) -> None:
    async with httpx.AsyncClient(base_url=service.url) as client:
        await wait_until_broker(client, "ok")
        before = await creates(client, 100, "up")
        broker_proxy.cut()
        await wait_until_broker(client, "down")
        during = await creates(client, 100, "down")
        await asyncio.sleep(OUTAGE_S)  # the relay keeps retrying meanwhile
        pending = await private_db.fetchval(PENDING)
        broker_proxy.restore()
        restored_at = time.monotonic()
        ids = {o.json()["id"] for o in before + during if o.status == 201}
        with contextlib.suppress(TimeoutError):  # what is missing is asserted below
            await consumer.wait_for(len(ids), ids, timeout=DELIVER_WITHIN_S)
        delivered_after = time.monotonic() - restored_at
        envelopes = consumer.envelopes(ids)
        left = await wait_until_published(private_db)
        broker = (await client.get("/healthcheck/ready")).json()["checks"]["broker"]

    missing = ids - {e["subject"] for e in envelopes}
    report(
        "broker outage delivery",
        events=len(ids),
        pending_at_restore=pending,
        delivered=len(ids) - len(missing),
        undelivered=len(missing),
        delivered_after_s=round(delivered_after, 2),
        left_unpublished=left,
        broker_after=broker,
    )
    assert [o for o in before + during if o.status != 201] == []
    assert pending > 0
    assert broker == "ok", "the relay never reconnected after the broker came back"
    assert len(missing) == 0, f"{len(missing)} of {len(ids)} events never arrived"
    assert left == 0
