"""Far more concurrent requests than connections while the few connections are stuck: the others wait up
to DB_POOL_TIMEOUT and get a 503 problem, never a 500; the process stays up and serves normally after."""

import asyncio
import time
import uuid

import httpx
import pytest

from loadtest.service_process import ServiceProcess
from loadtest.traffic import send, send_bare
from tests.support.evidence import report
from tests.support.private_db import PrivateDatabase

pytestmark = pytest.mark.slow

POOL_SIZE = 2
POOL_TIMEOUT = 0.5
CONCURRENT = 200
# The requests the pool cannot serve: all but the few that hold a connection (or get one on release).
EXHAUSTED = CONCURRENT - 2 * POOL_SIZE
# The lock is held until that many are answered, so that none reaches the pool only after the release.
RELEASE_WITHIN_S = 20.0
# Waiting for a connection is bounded by the pool timeout; the rest is 200 requests sharing one event loop.
ANSWER_WITHIN_S = POOL_TIMEOUT + 2.5


async def test_pool_exhaustion_is_503_within_the_pool_timeout(private_db: PrivateDatabase) -> None:
    env = {
        "DATABASE_URL": private_db.url,
        "DB_POOL_MIN_SIZE": str(POOL_SIZE),
        "DB_POOL_MAX_SIZE": str(POOL_SIZE),
        "DB_POOL_TIMEOUT": str(POOL_TIMEOUT),
        "DB_STATEMENT_TIMEOUT": str(RELEASE_WITHIN_S + 10),  # stuck for as long as the lock is held
        "LOG_LEVEL": "warning",
    }
    with ServiceProcess(env) as service:
        assert service.process is not None
        async with httpx.AsyncClient(base_url=service.url) as client:
            ids = []
            for i in range(5):
                body = {"username": f"pool{i}", "first_name": "Po", "last_name": "Ol"}
                response = await client.post("/users/", json=body)
                assert response.status_code == 201
                ids.append(response.json()["id"])
            # Hold every connection the service can have: statements on users wait for this lock.
            locker = await private_db.connect()
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")

            def request(i: int) -> tuple[str, str, dict[str, str] | None]:
                if i % 4 == 0:
                    body = {"username": f"p{uuid.uuid4().hex[:12]}", "first_name": "Po", "last_name": "Ol"}
                    return "POST", "/users/", body
                if i % 4 == 1:
                    return "GET", "/users/?limit=10", None
                return "GET", f"/users/{ids[i % len(ids)]}", None

            # Bare requests: through httpx, the burst cost this process seconds of CPU, delaying every answer.
            tasks = [
                asyncio.create_task(send_bare(service.url, *request(i), timeout=30))
                for i in range(CONCURRENT)
            ]
            locked_at = time.monotonic()
            answered_while_locked = 0
            while answered_while_locked < EXHAUSTED and time.monotonic() - locked_at < RELEASE_WITHIN_S:
                await asyncio.sleep(0.05)
                answered_while_locked = sum(t.done() for t in tasks)
            held_s = time.monotonic() - locked_at
            await tx.commit()
            await locker.close()
            outcomes = await asyncio.gather(*tasks)
            alive = service.process.poll() is None
            after = [await send(client, "GET", f"/users/{ids[i % len(ids)]}") for i in range(50)]
            after += [
                await send(
                    client, "POST", "/users/", {"username": f"after{i}", "first_name": "A", "last_name": "B"}
                )
                for i in range(10)
            ]
            ready = await send(client, "GET", "/healthcheck/ready")

    unavailable = [o for o in outcomes if o.status == 503]
    report(
        "pool exhaustion",
        concurrent=CONCURRENT,
        lock_held_s=round(held_s, 2),
        answered_while_locked=answered_while_locked,
        ok=sum(o.ok for o in outcomes),
        unavailable=len(unavailable),
        other=len(outcomes) - len(unavailable) - sum(o.ok for o in outcomes),
        max_503_s=round(max((o.elapsed for o in unavailable), default=0), 3),
        slowest_ok_s=round(max((o.elapsed for o in outcomes if o.ok), default=0), 3),
        after_ok=sum(o.ok for o in after),
    )
    assert answered_while_locked >= EXHAUSTED, (
        f"only {answered_while_locked} of {CONCURRENT} requests were answered in the {RELEASE_WITHIN_S:g} s "
        f"the pool was held; {EXHAUSTED} should have been refused by then"
    )
    assert [str(o) for o in outcomes if not (o.ok or o.status == 503)] == []
    assert len(unavailable) >= EXHAUSTED, "the pool was not exhausted"
    assert [f"{o}: {o.problem_errors(503)}" for o in unavailable if o.problem_errors(503)] == []
    assert [o.headers.get("retry-after") for o in unavailable if o.headers.get("retry-after") != "1"] == []
    assert [str(o) for o in unavailable if o.elapsed >= ANSWER_WITHIN_S] == []
    assert alive
    assert [str(o) for o in after if not o.ok] == []
    assert ready.status == 200
