"""A busy pool is not a dead database: readiness stays 200 while every connection is in use, and each
reason a request could not be served has its own answer and log field (pool wait, statement timeout,
unreachable)."""

import asyncio
import re
import uuid

import httpx
import pytest

from loadtest.service_process import ServiceProcess
from loadtest.traffic import send
from tests.support.evidence import log_lines, report
from tests.support.fault_proxy import FaultProxy
from tests.support.private_db import PrivateDatabase, proxied_url

pytestmark = pytest.mark.slow

POOL_SIZE = 2
HELD_REQUESTS = 12
HOLD_S = 4.0
FAILED = "request failed: database unavailable"


async def seed(client: httpx.AsyncClient, n: int = 3) -> list[str]:
    ids = []
    for _ in range(n):
        body = {"username": f"c{uuid.uuid4().hex[:12]}", "first_name": "Ca", "last_name": "Use"}
        response = await client.post("/users/", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def gauge(metrics: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{name}{re.escape(labels)} (\S+)$", metrics, re.MULTILINE)
    assert match, f"{name}{labels} not exposed"
    return float(match.group(1))


async def test_a_saturated_pool_is_ready_and_says_so(private_db: PrivateDatabase) -> None:
    env = {
        "DATABASE_URL": private_db.url,
        "DB_POOL_MIN_SIZE": str(POOL_SIZE),
        "DB_POOL_MAX_SIZE": str(POOL_SIZE),
        "DB_POOL_TIMEOUT": str(HOLD_S + 4),
        "DB_STATEMENT_TIMEOUT": str(HOLD_S + 4),
    }
    with ServiceProcess(env) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            ids = await seed(client)
            locker = await private_db.connect()
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            held = [
                asyncio.create_task(send(client, "GET", f"/users/{ids[i % len(ids)]}"))
                for i in range(HELD_REQUESTS)
            ]
            async with asyncio.timeout(20):  # every connection waits on the lock, the rest on the pool
                while not (ready := await client.get("/healthcheck/ready")).json()["pool"]["waiting"] >= (
                    HELD_REQUESTS - POOL_SIZE
                ):
                    await asyncio.sleep(0.1)
            metrics = (await client.get("/metrics")).text
            await tx.commit()
            await locker.close()
            outcomes = await asyncio.gather(*held)

    body = ready.json()
    report("saturated pool", readiness=ready.status_code, pool=body.get("pool"))
    assert ready.status_code == 200, ready.text
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["database_pool"] == "saturated"
    assert body["pool"]["used"] == POOL_SIZE
    assert body["pool"]["waiting"] >= HELD_REQUESTS - POOL_SIZE
    pool = 'db_client_connection_pool_name="primary"'
    used = f'{{{pool},db_client_connection_state="used"}}'
    assert gauge(metrics, "db_client_connections", used) == POOL_SIZE
    assert gauge(metrics, "db_client_connection_pending_requests", f"{{{pool}}}") >= HELD_REQUESTS - POOL_SIZE
    assert [str(o) for o in outcomes if not o.ok] == []


async def test_a_pool_wait_and_a_statement_timeout_are_told_apart(private_db: PrivateDatabase) -> None:
    env = {
        "DATABASE_URL": private_db.url,
        "DB_POOL_MIN_SIZE": "1",
        "DB_POOL_MAX_SIZE": "1",
        "DB_POOL_TIMEOUT": "0.5",
        "DB_STATEMENT_TIMEOUT": "1.0",
    }
    with ServiceProcess(env) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            (user_id,) = await seed(client, 1)
            locker = await private_db.connect()
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            stuck = asyncio.create_task(send(client, "GET", f"/users/{user_id}"))  # holds the one connection
            await asyncio.sleep(0.2)
            waited = await send(client, "GET", f"/users/{user_id}")  # finds no connection free
            timed_out = await stuck
            await tx.commit()
            await locker.close()
            after = await send(client, "GET", f"/users/{user_id}")
        lines = log_lines(service.log_path)

    report("causes", pool_wait=waited.json().get("detail"), statement=timed_out.json().get("detail"))
    assert waited.problem_errors(503) == []
    assert timed_out.problem_errors(503) == []
    assert "no database connection was free" in waited.json()["detail"]
    assert "ran past its limit" in timed_out.json()["detail"]
    causes = [
        line.get("cause") for line in lines if line.get("event") == "request failed: database unavailable"
    ]
    assert sorted(causes) == ["pool_timeout", "statement_timeout"]
    assert after.ok, str(after)


async def test_an_unreachable_database_is_said_so(private_db: PrivateDatabase, db_proxy: FaultProxy) -> None:
    with ServiceProcess({"DATABASE_URL": proxied_url(db_proxy, private_db.url)}) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            (user_id,) = await seed(client, 1)
            db_proxy.cut()
            try:
                outcome = await send(client, "GET", f"/users/{user_id}")
                ready = await client.get("/healthcheck/ready")
            finally:
                db_proxy.restore()
        lines = log_lines(service.log_path)

    assert outcome.problem_errors(503) == []
    assert outcome.json()["detail"] == "The database is unavailable; retry shortly."
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "down"
    causes = [
        line.get("cause") for line in lines if line.get("event") == "request failed: database unavailable"
    ]
    assert causes == ["unreachable"]
