"""Pages that cost far more than a user by id (a deep offset on a large table) cannot starve the cheap
requests: pages run a few at a time, and the rest of the pool stays free for everyone else."""

import json
import subprocess
import sys
import time

import httpx
import pytest

from loadtest.service_process import ServiceProcess
from loadtest.traffic import send
from tests.support.evidence import report
from tests.support.private_db import PrivateDatabase

pytestmark = pytest.mark.slow

USERS = 500_000
DEEP_CLIENTS = 40
LOAD_S = 8.0
POOL_SIZE = 4
POOL_TIMEOUT_S = 0.5  # a read by id that waits behind the pages longer than this is a 503
BY_ID_WITHIN_S = POOL_TIMEOUT_S  # never waits behind the pages for a connection
DEEP_PAGE = "/users/?offset=2147483647&limit=1000"

# The deep pages come from a process of their own, so the reads by id measure the service, not a client
# event loop shared with forty busy tasks. Each client honours Retry-After, as clients should.
DEEP_LOAD = """
import asyncio, json, sys, time
import httpx

async def main(url, clients, seconds):
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=clients)) as client:
        stop = time.monotonic() + seconds
        async def loop():
            statuses = []
            while time.monotonic() < stop:
                try:
                    response = await client.get(sys.argv[4], timeout=30)
                except httpx.HTTPError as exc:
                    statuses.append(type(exc).__name__)
                    continue
                statuses.append(response.status_code)
                if response.status_code == 503:
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            return statuses
        groups = await asyncio.gather(*(loop() for _ in range(clients)))
    print(json.dumps([s for group in groups for s in group]))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


async def test_deep_pages_do_not_starve_reads_by_id(private_db: PrivateDatabase) -> None:
    conn = await private_db.connect()
    try:
        await conn.execute(
            "INSERT INTO users (id, username, first_name, last_name, created_at) "
            "SELECT gen_random_uuid(), 'u' || i, 'Deep', 'Page', now() - i * interval '1 ms' "
            "FROM generate_series(1, $1) i",
            USERS,
            timeout=300,
        )
        await conn.execute("VACUUM ANALYZE users", timeout=300)
        ids = [str(r["id"]) for r in await conn.fetch("SELECT id FROM users LIMIT 20")]
    finally:
        await conn.close()
    env = {
        "DATABASE_URL": private_db.url,
        "DB_POOL_MIN_SIZE": str(POOL_SIZE),
        "DB_POOL_MAX_SIZE": str(POOL_SIZE),
        "DB_POOL_TIMEOUT": str(POOL_TIMEOUT_S),
        "LOG_LEVEL": "warning",
    }
    with ServiceProcess(env) as service:
        load = subprocess.Popen(
            [sys.executable, "-c", DEEP_LOAD, service.url, str(DEEP_CLIENTS), str(LOAD_S), DEEP_PAGE],
            stdout=subprocess.PIPE,
            text=True,
        )
        async with httpx.AsyncClient(base_url=service.url) as client:
            time.sleep(1.0)  # the pages are queued up by now
            reads = []
            while load.poll() is None:
                reads.append(await send(client, "GET", f"/users/{ids[len(reads) % len(ids)]}"))
                time.sleep(0.1)
        out, _ = load.communicate(timeout=60)
    pages = json.loads(out)

    report(
        "deep pages",
        users=USERS,
        pages=len(pages),
        pages_ok=pages.count(200),
        pages_503=pages.count(503),
        by_id=len(reads),
        by_id_ok=sum(o.ok for o in reads),
        slowest_by_id_s=round(max(o.elapsed for o in reads), 3),
    )
    assert len(reads) > 10
    assert [str(o) for o in reads if not o.ok] == []
    assert [str(o) for o in reads if o.elapsed >= BY_ID_WITHIN_S] == []
    assert pages.count(200) > 0  # the pages were served, not refused wholesale
    assert [s for s in pages if s not in (200, 503)] == []  # a page refused is a 503, never anything else
