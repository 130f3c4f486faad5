"""SIGTERM while requests are in flight: they all complete, new connections are refused at once, the
process exits 0 within SHUTDOWN_TIMEOUT, and nothing is logged as an error."""

import asyncio
import signal
import socket
import time

import asyncpg
import httpx
import pytest

from loadtest.service_process import ServiceProcess
from loadtest.traffic import send
from tests.support.evidence import log_lines, report
from tests.support.private_db import PrivateDatabase

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SEEDED = 1000
IN_FLIGHT = 30
SHUTDOWN_TIMEOUT = 5.0
HOLD_AFTER_SIGNAL_S = 1.0


def refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


async def waiting_on_lock(conn: asyncpg.Connection) -> int:
    """Statements waiting for the lock on users (pg_locks, unlike pg_stat_activity, is no snapshot)."""
    query = "SELECT count(*) FROM pg_locks WHERE relation = 'users'::regclass AND NOT granted"
    return int(await conn.fetchval(query))


async def test_sigterm_lets_in_flight_requests_finish_and_exits_cleanly(
    private_db: PrivateDatabase, broker_url: str
) -> None:
    await private_db.fetch(
        "INSERT INTO users (id, username, first_name, last_name) "
        "SELECT gen_random_uuid(), 'seeded' || i, 'Seeded', 'User' FROM generate_series(1, $1) AS i",
        SEEDED,
    )
    env = {
        "DATABASE_URL": private_db.url,
        "BROKER_URL": broker_url,
        "SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
        "DB_POOL_MAX_SIZE": str(IN_FLIGHT + 5),
        "DB_LIST_CONCURRENCY": str(IN_FLIGHT),  # every one of the pages in flight at once
    }
    with ServiceProcess(env) as service:
        assert service.process is not None
        locker = await private_db.connect()
        limits = httpx.Limits(max_connections=IN_FLIGHT)
        async with httpx.AsyncClient(base_url=service.url, limits=limits) as client:
            # The list requests are held mid-query by a lock on the table, so all are surely in flight.
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            requests = [
                asyncio.create_task(send(client, "GET", "/users/?limit=1000", timeout=30))
                for _ in range(IN_FLIGHT)
            ]
            async with asyncio.timeout(10):
                while await waiting_on_lock(locker) < IN_FLIGHT:
                    await asyncio.sleep(0.02)
            service.signal(signal.SIGTERM)
            signalled = time.monotonic()
            refused_after = None
            while time.monotonic() - signalled < HOLD_AFTER_SIGNAL_S:
                if refused_after is None and refused(service.port):
                    refused_after = time.monotonic() - signalled
                await asyncio.sleep(0.05)
            alive_while_held = service.process.poll() is None
            await tx.commit()
            await locker.close()
            outcomes = await asyncio.gather(*requests)
        returncode = await asyncio.to_thread(service.wait, SHUTDOWN_TIMEOUT + 5)
        stopped_after = time.monotonic() - signalled
        lines = log_lines(service.log_path)

    errors = [line for line in lines if line["level"] in {"error", "critical"}]
    report(
        "SIGTERM",
        in_flight=len(outcomes),
        completed=sum(o.status == 200 for o in outcomes),
        refused_after_s=None if refused_after is None else round(refused_after, 2),
        exit_code=returncode,
        stopped_after_s=round(stopped_after, 2),
        error_lines=len(errors),
    )
    assert [str(o) for o in outcomes if o.status != 200] == []
    assert all(len(o.json()["users"]) == SEEDED for o in outcomes)
    assert alive_while_held, "the process did not wait for the requests in flight"
    assert refused_after is not None, "new connections were still accepted after SIGTERM"
    assert returncode == 0
    assert stopped_after < SHUTDOWN_TIMEOUT
    assert errors == []


CUT_SHUTDOWN_TIMEOUT = 1.0
HELD_REQUESTS = 6


async def test_requests_past_the_shutdown_deadline_get_a_503_problem_and_roll_back(
    private_db: PrivateDatabase,
) -> None:
    env = {"DATABASE_URL": private_db.url, "SHUTDOWN_TIMEOUT": str(CUT_SHUTDOWN_TIMEOUT)}
    with ServiceProcess(env) as service:
        locker = await private_db.connect()
        async with httpx.AsyncClient(base_url=service.url) as client:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            bodies = [
                {"username": f"cut{i}", "first_name": "Cut", "last_name": "Off"} for i in range(HELD_REQUESTS)
            ]
            requests = [
                asyncio.create_task(send(client, "POST", "/users/", body, timeout=30)) for body in bodies
            ]
            async with asyncio.timeout(10):
                while await waiting_on_lock(locker) < HELD_REQUESTS:
                    await asyncio.sleep(0.02)
            service.signal(signal.SIGTERM)
            outcomes = await asyncio.gather(*requests)  # answered at the deadline, the lock still held
            await tx.rollback()
            await locker.close()
        returncode = await asyncio.to_thread(service.wait, CUT_SHUTDOWN_TIMEOUT + 10)
        lines = log_lines(service.log_path)

    report("shutdown deadline", held=HELD_REQUESTS, statuses=sorted({o.status for o in outcomes}))
    assert [f"{o}: {o.problem_errors(503)}" for o in outcomes if o.problem_errors(503)] == []
    for outcome in outcomes:
        assert outcome.headers.get("retry-after") == "1"
        assert outcome.headers.get("x-request-id") == outcome.json()["request_id"]
        assert outcome.headers.get("referrer-policy") == "no-referrer"
        assert outcome.headers.get("x-content-type-options") == "nosniff"
    assert returncode == 0
    assert await private_db.fetchval("SELECT count(*) FROM users") == 0  # every cut request rolled back
    assert await private_db.fetchval("SELECT count(*) FROM outbox") == 0
    assert not [line for line in lines if "Traceback" in str(line.get("exception", ""))]
