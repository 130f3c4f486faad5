"""Shared fixtures: a real PostgreSQL (embedded by default, TEST_DATABASE_URL to use another server),
migrated once per session, emptied between tests; the app over HTTP in-process."""

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from loadtest.scratch_db import create_database
from tests.support.broker import broker_url, consumer  # noqa: F401 - fixtures for every test folder
from user_service.infrastructure.db import migrations
from user_service.infrastructure.db.database import Database, PoolSettings
from user_service.infrastructure.embedded_postgres import EmbeddedPostgres
from user_service.main.app import create_app
from user_service.main.settings import Settings


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A server URL: TEST_DATABASE_URL's server, or an embedded PostgreSQL started for this session."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    # Not under pytest's own temporary folder: the server runs as another user and needs to reach it.
    data_dir = Path(tempfile.mkdtemp(prefix="user-service-test-"))
    try:
        with EmbeddedPostgres(data_dir) as pg:
            yield pg.start()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(postgres_server: str) -> str:
    """A migrated database of its own for this test session."""
    name = f"user_service_test_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(create_database(postgres_server, name))
    migrations.upgrade(url)
    return url


@pytest.fixture(scope="session")
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(PoolSettings(dsn=database_url, min_size=1, max_size=10))
    await db.open()
    yield db
    await db.close()


@pytest.fixture
async def clean_db(database: Database) -> AsyncIterator[Database]:
    """The database, empty before the test."""
    async with database.connection() as conn:
        await conn.execute("TRUNCATE users, outbox, idempotency_keys")
    return database


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"database_url": database_url, "broker_url": None, "environment": "test"}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(database_url))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI, clean_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
