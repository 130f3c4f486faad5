"""Databases made for a run and dropped after it, on any PostgreSQL server: for the tests and the
benchmarks. CREATE and DROP DATABASE run in the server's `postgres` database."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(url: str, name: str) -> str:
    """`url` naming the database `name` instead of its own."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """A new, empty database `name` (a copy of `template` if given; an older one of that name is dropped
    first) on the server of `server_url`; its URL."""
    conn = await asyncpg.connect(with_database(server_url, "postgres"), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        suffix = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(with_database(server_url, "postgres"), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
