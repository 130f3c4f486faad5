"""Pages run a few at a time (`PostgresUserReader`'s page slots): a free slot is taken at once, a page
that finds every slot busy waits its turn in order, and one that waits longer than the pool's timeout is
refused as unavailable, leaving the slots as they were."""

import asyncio
import time

import pytest

from user_service.application.errors import StorageCause, StorageUnavailable
from user_service.application.ports import Order
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.reader import PostgresUserReader


def page(reader: PostgresUserReader) -> "asyncio.Future[object]":
    return asyncio.ensure_future(reader.list(offset=0, limit=10, order=Order.ASC, deleted=None))


async def test_a_free_slot_is_taken_and_given_back(clean_db: Database) -> None:
    reader = PostgresUserReader(clean_db, list_concurrency=2)
    slots = reader._pages
    assert (await reader.list(offset=0, limit=10, order=Order.ASC, deleted=None)).users == []
    assert slots._value == 2  # given back


async def test_a_page_waits_for_a_busy_slot_and_then_runs(clean_db: Database) -> None:
    reader = PostgresUserReader(clean_db, list_concurrency=1)
    await reader._pages.acquire()  # the one slot, busy
    finished: list[str] = []
    first, second = page(reader), page(reader)
    first.add_done_callback(lambda _: finished.append("first"))
    second.add_done_callback(lambda _: finished.append("second"))
    await asyncio.sleep(0.05)
    assert finished == []  # both waiting for the slot
    reader._pages.release()
    await asyncio.gather(first, second)
    assert finished == ["first", "second"]  # in the order they came, one at a time
    assert reader._pages._value == 1


async def test_a_page_that_waits_past_the_pool_timeout_is_refused(clean_db: Database) -> None:
    timeout = clean_db.settings.acquire_timeout
    reader = PostgresUserReader(clean_db, list_concurrency=1)
    await reader._pages.acquire()
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as refused:
        await reader.list(offset=0, limit=10, order=Order.ASC, deleted=None)
    waited = time.monotonic() - started
    assert refused.value.cause is StorageCause.POOL_TIMEOUT
    assert timeout <= waited < timeout + 1.0
    reader._pages.release()
    assert reader._pages._value == 1  # the refused page took nothing
    assert (await reader.list(offset=0, limit=10, order=Order.ASC, deleted=None)).users == []
