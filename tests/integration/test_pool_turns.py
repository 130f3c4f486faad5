"""The pool's connections go to requests in the order they asked: one that waits is not overtaken by
requests that arrive after it, however often they come (asyncpg's pool alone lets them)."""

import asyncio
import itertools

import pytest

from user_service.application.errors import StorageCause, StorageUnavailable
from user_service.infrastructure.db.database import Database, PoolSettings, Turns


async def test_connections_are_granted_in_the_order_they_were_asked_for(database_url: str) -> None:
    db = Database(PoolSettings(dsn=database_url, min_size=2, max_size=2, acquire_timeout=30))
    await db.open()
    asked = 0
    granted: list[int] = []  # the ask number of each request, in the order it got a connection

    async def client() -> None:
        """Asks again the moment it gives its connection back, 20 times."""
        nonlocal asked
        for _ in range(20):
            ticket, asked = asked, asked + 1
            async with db.connection() as conn:
                granted.append(ticket)
                await conn.fetchval("SELECT 1")

    try:
        await asyncio.gather(*(client() for _ in range(30)))
    finally:
        await db.close()
    assert len(granted) == 600
    overtaken = sum(1 for earlier, later in itertools.pairwise(granted) if later < earlier)
    assert overtaken == 0, (
        f"{overtaken} of 600 connections went to a request that asked after one still waiting"
    )


async def test_the_wait_for_a_turn_ends_at_the_pool_timeout(database_url: str) -> None:
    db = Database(PoolSettings(dsn=database_url, min_size=1, max_size=1, acquire_timeout=0.2))
    await db.open()
    try:
        async with db.connection():
            with pytest.raises(StorageUnavailable) as caught:
                async with db.connection():
                    pass
        assert caught.value.cause is StorageCause.POOL_TIMEOUT
        assert db.pool_state().waiting == 0
        async with db.connection() as conn:  # the turn given up by the one that timed out is not lost
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.close()


async def test_a_turn_handed_to_a_waiter_cancelled_meanwhile_goes_to_the_next() -> None:
    turns = Turns(1)
    await turns.take()
    order: list[str] = []

    async def wait(name: str) -> None:
        await turns.take()
        order.append(name)

    first = asyncio.create_task(wait("first"))
    second = asyncio.create_task(wait("second"))
    await asyncio.sleep(0)  # both are waiting
    turns.give()  # handed to the first ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert order == ["second"]
    turns.give()
    await asyncio.wait_for(turns.take(), 1)  # one turn, neither lost ...
    with pytest.raises(TimeoutError):  # ... nor doubled
        await asyncio.wait_for(turns.take(), 0.05)
