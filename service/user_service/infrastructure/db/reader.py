"""The read side: read models straight from SQL, no aggregates, no transaction."""

from uuid import UUID

import asyncpg

from user_service.application.ports import Order
from user_service.application.read_models import Page, Position, UserView
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.rows import VIEW_COLUMNS

# Constant text built from the read model's fields (rows.VIEW_COLUMNS); every value is a parameter.
_BY_ID = f"SELECT {VIEW_COLUMNS} FROM users WHERE id = $1"  # noqa: S608
_BY_USERNAME = f"SELECT {VIEW_COLUMNS} FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL"  # noqa: S608
_FILTERS = {None: [], True: ["deleted_at IS NOT NULL"], False: ["deleted_at IS NULL"]}


def _list_statement(order: Order, deleted: bool | None, keyset: bool) -> str:
    """A page in `order` of (created_at, id): after a position (`keyset`: an index range scan on the
    (created_at, id) index of its filter, so any depth costs the same), or after `OFFSET` rows. The last
    column is created_at, for the position of the next page."""
    direction = order.value.upper()
    conditions = list(_FILTERS[deleted])
    if keyset:
        conditions.append(f"(created_at, id) {'>' if order is Order.ASC else '<'} ($2, $3)")
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    return (
        f"SELECT {VIEW_COLUMNS}, created_at FROM users {where}"  # noqa: S608
        f"ORDER BY created_at {direction}, id {direction} LIMIT $1{'' if keyset else ' OFFSET $2'}"
    )


_LIST = {
    (order, deleted, keyset): _list_statement(order, deleted, keyset)
    for order in Order
    for deleted in _FILTERS
    for keyset in (False, True)
}


def _view(row: asyncpg.Record) -> UserView:
    return UserView(*row)  # the statements select UserView's fields in its order


class PostgresUserReader:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: UUID) -> UserView | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_BY_ID, user_id)
        return None if row is None else _view(row)

    async def get_live_by_username(self, username: str) -> UserView | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_BY_USERNAME, username)
        return None if row is None else _view(row)

    async def list(
        self, *, offset: int, limit: int, order: Order, deleted: bool | None, after: Position | None = None
    ) -> Page:
        # One row more than the page: whether another page follows, without a page that comes back empty.
        statement = _LIST[order, deleted, after is not None]
        args = (offset,) if after is None else after
        async with self._db.connection() as conn:
            rows = await conn.fetch(statement, limit + 1, *args)
        more = len(rows) > limit
        rows = rows[:limit]
        following = Position(rows[-1]["created_at"], rows[-1]["id"]) if more else None
        return Page([UserView(*row[:-1]) for row in rows], following)
