"""The database goes away for ten seconds under a steady flow of reads and writes: the service answers
every request quickly with a 503 problem (never a 500, never hanging), says it is not ready while staying
alive, and comes back on its own, with no broken connection left in its pool."""

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from loadtest.service_process import ServiceProcess
from loadtest.traffic import Outcome, send
from tests.support.evidence import report
from tests.support.fault_proxy import FaultProxy
from tests.support.private_db import PrivateDatabase, proxied_url

pytestmark = pytest.mark.slow

OUTAGE_S = 10.0
ANSWER_WITHIN_S = 2.0
RECOVER_WITHIN_S = 5.0


@pytest.fixture
def service(private_db: PrivateDatabase, db_proxy: FaultProxy) -> Iterator[ServiceProcess]:
    with ServiceProcess({"DATABASE_URL": proxied_url(db_proxy, private_db.url)}) as process:
        yield process


def new_user() -> dict[str, str]:
    return {"username": f"u{uuid.uuid4().hex[:12]}", "first_name": "Out", "last_name": "Age"}


async def flow(client: httpx.AsyncClient, known: list[str], stop: asyncio.Event) -> list[Outcome]:
    """Reads and writes, back to back, until stopped."""
    outcomes = []
    while not stop.is_set():
        outcomes.append(await send(client, "GET", f"/users/{known[len(outcomes) % len(known)]}"))
        outcome = await send(client, "POST", "/users/", new_user())
        if outcome.status == 201:
            known.append(outcome.json()["id"])
        outcomes.append(outcome)
    return outcomes


async def test_database_outage_is_503_fast_and_heals_by_itself(
    service: ServiceProcess, db_proxy: FaultProxy
) -> None:
    async with httpx.AsyncClient(base_url=service.url) as client:
        known = []
        for _ in range(5):
            response = await client.post("/users/", json=new_user())
            assert response.status_code == 201, response.text
            known.append(response.json()["id"])

        stop = asyncio.Event()
        workers = [asyncio.create_task(flow(client, known, stop)) for _ in range(4)]
        await asyncio.sleep(1.5)
        cut_at = time.monotonic()
        db_proxy.cut()
        probes: list[tuple[Outcome, Outcome]] = []
        while time.monotonic() - cut_at < OUTAGE_S:
            ready = await send(client, "GET", "/healthcheck/ready")
            live = await send(client, "GET", "/healthcheck")
            probes.append((ready, live))
            await asyncio.sleep(0.5)
        restored_at = time.monotonic()
        db_proxy.restore()
        stop.set()
        outcomes = [o for worker in await asyncio.gather(*workers) for o in worker]

        # After the restore: 2xx again within seconds, by itself...
        recovered_after = None
        while time.monotonic() - restored_at < RECOVER_WITHIN_S + 5:
            outcome = await send(client, "GET", f"/users/{known[0]}")
            if outcome.ok:
                recovered_after = time.monotonic() - restored_at
                break
            await asyncio.sleep(0.05)
        # ...and for good: no connection in the pool is a stale one from before the outage.
        after = []
        for i in range(50):
            if i % 2:
                after.append(await send(client, "POST", "/users/", new_user()))
            else:
                after.append(await send(client, "GET", f"/users/{known[i % len(known)]}"))
        ready_after = await send(client, "GET", "/healthcheck/ready")

    before = [o for o in outcomes if o.started + o.elapsed < cut_at]
    straddling = [o for o in outcomes if o.started < cut_at <= o.started + o.elapsed]
    during = [o for o in outcomes if cut_at <= o.started and o.started + o.elapsed < restored_at]
    report(
        "database outage",
        requests=len(outcomes) + len(after) + 2 * len(probes),
        during=len(during),
        max_during_s=round(max((o.elapsed for o in during), default=0), 3),
        statuses_during=sorted({o.status for o in during}, key=str),
        recovered_after_s=None if recovered_after is None else round(recovered_after, 3),
        after_ok=sum(o.ok for o in after),
    )
    assert before, "no traffic before the outage"
    assert len(during) >= 20, f"too little traffic during the outage: {len(during)} requests"
    assert [str(o) for o in before if not o.ok] == []
    assert [str(o) for o in straddling if not (o.ok or o.status == 503)] == []
    assert [f"{o}: {o.problem_errors(503)}" for o in during if o.problem_errors(503)] == []
    assert [str(o) for o in during if o.elapsed >= ANSWER_WITHIN_S] == []
    assert [o.headers.get("retry-after") for o in during if o.headers.get("retry-after") != "1"] == []

    assert probes
    assert [f"{r}: {r.problem_errors(503)}" for r, _ in probes if r.problem_errors(503)] == []
    assert all(r.json()["checks"]["database"] == "down" for r, _ in probes)
    assert [str(live) for _, live in probes if live.status != 200] == []

    assert recovered_after is not None, "the service did not answer 2xx after the database came back"
    assert recovered_after < RECOVER_WITHIN_S
    assert [str(o) for o in after if not o.ok] == []
    assert ready_after.status == 200, str(ready_after)
    assert service.process is not None
    assert service.process.poll() is None
