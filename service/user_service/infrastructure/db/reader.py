"""The read side: read models straight from SQL, no aggregates, no transaction; on the replica when it
may serve the read (replica.ReadRouting), else on the primary."""

import asyncio
from enum import StrEnum
from uuid import UUID

import asyncpg

from user_service.application.errors import StorageCause, StorageUnavailable
from user_service.application.ports import Order
from user_service.application.read_models import Page, Position, UserView
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.replica import ReadRouting
from user_service.infrastructure.db.rows import VIEW_COLUMNS

# Constant text built from the read model's fields (rows.VIEW_COLUMNS); every value is a parameter.
_BY_ID = f"SELECT {VIEW_COLUMNS} FROM users WHERE id = $1"  # noqa: S608
_BY_USERNAME = f"SELECT {VIEW_COLUMNS} FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL"  # noqa: S608
_FILTERS = {None: [], True: ["deleted_at IS NOT NULL"], False: ["deleted_at IS NULL"]}
# Past this offset a page skips its rows on an index-only scan of (created_at, id), then reads only the
# page's rows by primary key: about half the cost of skipping through the table. Nearer pages read the
# table in index order directly, which is cheaper there than the join.
DEEP_OFFSET = 10_000


class Paging(StrEnum):
    KEYSET = "keyset"  # after a position: an index range scan, the same cost at any depth
    OFFSET = "offset"  # after OFFSET rows, read in index order
    DEEP_OFFSET = "deep_offset"  # after OFFSET rows skipped on the index alone


def _list_statement(order: Order, deleted: bool | None, paging: Paging) -> str:
    """A page in `order` of (created_at, id) on the (created_at, id) index of its filter. The last column
    is created_at, for the position of the next page."""
    direction = order.value.upper()
    by = f"ORDER BY created_at {direction}, id {direction}"
    conditions = list(_FILTERS[deleted])
    if paging is Paging.KEYSET:
        conditions.append(f"(created_at, id) {'>' if order is Order.ASC else '<'} ($2, $3)")
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    columns = f"{VIEW_COLUMNS}, created_at"
    if paging is Paging.KEYSET:
        return f"SELECT {columns} FROM users {where}{by} LIMIT $1"  # noqa: S608
    if paging is Paging.OFFSET:
        return f"SELECT {columns} FROM users {where}{by} LIMIT $1 OFFSET $2"  # noqa: S608
    page = f"SELECT id FROM users {where}{by} LIMIT $1 OFFSET $2"  # noqa: S608
    return f"SELECT {columns} FROM users WHERE id IN ({page}) {by}"  # noqa: S608


_LIST = {
    (order, deleted, paging): _list_statement(order, deleted, paging)
    for order in Order
    for deleted in _FILTERS
    for paging in Paging
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

    async def list(
        self, *, offset: int, limit: int, order: Order, deleted: bool | None, after: Position | None = None
    ) -> Page:
        if after is not None:
            paging, args = Paging.KEYSET, tuple(after)
        else:
            paging, args = (Paging.DEEP_OFFSET if offset >= DEEP_OFFSET else Paging.OFFSET), (offset,)
        statement = _LIST[order, deleted, paging]
        await self._page_slot()
        try:
            # One row more than the page: whether another page follows, without a page that comes back empty.
            rows = await self._reads.run(lambda conn: conn.fetch(statement, limit + 1, *args))
        finally:
            self._pages.release()
        more = len(rows) > limit
        rows = rows[:limit]
        following = Position(rows[-1]["created_at"], rows[-1]["id"]) if more else None
        return Page([UserView(*row[:-1]) for row in rows], following)

    async def _page_slot(self) -> None:
        """A page slot, within the pool's timeout: a free one (no waiter before it: `locked` says so) at
        once; otherwise in turn, under a deadline of the running task rather than `wait_for`, which runs
        the wait as a task of its own (about 8 µs a page, and under load every page waits)."""
        if not self._pages.locked():
            await self._pages.acquire()
            return
        try:
            async with asyncio.timeout(self._page_wait):
                await self._pages.acquire()
        except TimeoutError:
            raise StorageUnavailable("every page slot was in use", StorageCause.POOL_TIMEOUT) from None
