"""Private databases for tests that run the service as a process and break things around it.

Each test gets a migrated database of its own (copied from a migrated template, so it costs a few
milliseconds), on the session's PostgreSQL server: the embedded one by default, or TEST_DATABASE_URL's.
`db_target` is where a FaultProxy reaches that server: its unix socket (the embedded server listens on
no TCP port) or its TCP address, so a service can reach the database through a proxy the test cuts.
A server that cannot be reached skips these tests, except in CI (CI set), where it is a failure.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from loadtest.scratch_db import create_database, drop_database, with_database
from tests.support.fault_proxy import FaultProxy, Target
from tests.support.required import require_answer
from user_service.infrastructure.db import migrations


def proxy_target(server_url: str) -> Target:
    """Where a proxy connects to reach the server of `server_url`."""
    parts = urlsplit(server_url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0] or (
        parts.hostname if parts.hostname and parts.hostname.startswith("/") else None
    )
    port = parts.port or int(parse_qs(parts.query).get("port", ["5432"])[0])
    if socket_dir:
        return str(Path(socket_dir) / f".s.PGSQL.{port}")
    return (parts.hostname or "127.0.0.1", port)


@pytest.fixture(scope="session")
def db_target(postgres_server: str) -> Target:
    """The session's PostgreSQL server as a proxy target, checked to answer through a proxy."""
    target = proxy_target(postgres_server)

    async def probe() -> None:
        with FaultProxy(target) as proxy:
            conn = await asyncpg.connect(
                proxied_url(proxy, with_database(postgres_server, "postgres")), timeout=5
            )
            await conn.close()

    require_answer(probe, f"no PostgreSQL answers through a proxy to {target!r}")
    return target


@pytest.fixture(scope="session")
def template_database(postgres_server: str) -> Iterator[str]:
    """A migrated database that private databases are copied from."""
    name = f"user_service_faults_template_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(create_database(postgres_server, name))
    migrations.upgrade(url)
    yield name
    asyncio.run(drop_database(postgres_server, name))


@dataclass(frozen=True)
class PrivateDatabase:
    name: str
    url: str  # direct, as the session's server is reached

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await self.connect()
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def fetchval(self, query: str, *args: object) -> object:
        conn = await self.connect()
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()


@pytest.fixture
async def private_db(postgres_server: str, template_database: str) -> AsyncIterator[PrivateDatabase]:
    name = f"user_service_fault_{uuid.uuid4().hex[:10]}"
    url = await create_database(postgres_server, name, template=template_database)
    yield PrivateDatabase(name, url)
    await drop_database(postgres_server, name)


@pytest.fixture
def db_proxy(db_target: Target) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the session's PostgreSQL server."""
    with FaultProxy(db_target) as proxy:
        yield proxy


def proxied_url(proxy: FaultProxy, url: str, password: str | None = None) -> str:
    """The database of `url` as a TCP URL through `proxy`, with the same user (and `password`, if given,
    instead of the URL's own: the test servers trust local users, so any password works)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    secret = password if password is not None else parts.password
    userinfo = f"{user}:{secret}" if secret else user
    return f"postgresql://{userinfo}@{proxy.address}{parts.path or '/postgres'}"
