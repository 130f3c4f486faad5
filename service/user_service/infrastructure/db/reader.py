"""The read side: read models straight from SQL, no aggregates, no transaction; on the replica when it
may serve the read (replica.ReadRouting), else on the primary."""

import asyncio
from uuid import UUID

import asyncpg

from user_service.application.errors import StorageCause, StorageUnavailable
from user_service.application.ports import Order
from user_service.application.read_models import UserView
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.replica import ReadRouting
from user_service.infrastructure.db.rows import VIEW_COLUMNS

# Constant text built from the read model's fields (rows.VIEW_COLUMNS); every value is a parameter.
_BY_ID = f"SELECT {VIEW_COLUMNS} FROM users WHERE id = $1"  # noqa: S608
_BY_USERNAME = f"SELECT {VIEW_COLUMNS} FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL"  # noqa: S608
_FILTERS = {None: "", True: "WHERE deleted_at IS NOT NULL ", False: "WHERE deleted_at IS NULL "}
# Past this offset a page skips its rows on an index-only scan of (created_at, id), then reads only the
# page's rows by primary key: about half the cost of skipping through the table. Nearer pages read the
# table in index order directly, which is cheaper there than the join.
DEEP_OFFSET = 10_000


def _page(order: Order, deleted: bool | None, deep: bool) -> str:
    where, by = _FILTERS[deleted], f"ORDER BY created_at {order.value.upper()}, id {order.value.upper()}"
    if not deep:
        return f"SELECT {VIEW_COLUMNS} FROM users {where}{by} LIMIT $1 OFFSET $2"  # noqa: S608
    page = f"SELECT id FROM users {where}{by} LIMIT $1 OFFSET $2"  # noqa: S608
    return f"SELECT {VIEW_COLUMNS} FROM users WHERE id IN ({page}) {by}"  # noqa: S608


_LIST = {
    (order, deleted, deep): _page(order, deleted, deep)
    for order in Order
    for deleted in _FILTERS
    for deep in (False, True)
}


def _view(row: asyncpg.Record) -> UserView:
    return UserView(*row)  # the statements select UserView's fields in its order


class PostgresUserReader:
    """`list_concurrency` bounds the pages read at once: a page can cost far more than a user by id (a
    deep offset skips up to the whole table), so pages wait for one of these slots (as long as for a
    connection) and the rest of the pool stays free for everything else."""

    def __init__(self, reads: ReadRouting | Database, list_concurrency: int | None = None) -> None:
        self._reads = reads if isinstance(reads, ReadRouting) else ReadRouting(reads, None)
        primary = self._reads.primary.settings
        self._pages = asyncio.Semaphore(list_concurrency or max(1, primary.max_size // 2))
        self._page_wait = primary.acquire_timeout

    async def get(self, user_id: UUID) -> UserView | None:
        row = await self._reads.run(lambda conn: conn.fetchrow(_BY_ID, user_id))
        return None if row is None else _view(row)

    async def get_live_by_username(self, username: str) -> UserView | None:
        row = await self._reads.run(lambda conn: conn.fetchrow(_BY_USERNAME, username))
        return None if row is None else _view(row)

    async def list(self, *, offset: int, limit: int, order: Order, deleted: bool | None) -> list[UserView]:
        try:
            await asyncio.wait_for(self._pages.acquire(), self._page_wait)
        except TimeoutError:
            raise StorageUnavailable("every page slot was in use", StorageCause.POOL_TIMEOUT) from None
        statement = _LIST[order, deleted, offset >= DEEP_OFFSET]
        try:
            rows = await self._reads.run(lambda conn: conn.fetch(statement, limit, offset))
        finally:
            self._pages.release()
        return [_view(row) for row in rows]
