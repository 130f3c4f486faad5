"""The read side: read models straight from SQL, no aggregates, no transaction; on the replica when it
may serve the read (replica.ReadRouting), else on the primary."""

from uuid import UUID

import asyncpg

from user_service.application.ports import Order
from user_service.application.read_models import UserView
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.replica import ReadRouting
from user_service.infrastructure.db.rows import VIEW_COLUMNS

# Constant text built from the read model's fields (rows.VIEW_COLUMNS); every value is a parameter.
_BY_ID = f"SELECT {VIEW_COLUMNS} FROM users WHERE id = $1"  # noqa: S608
_BY_USERNAME = f"SELECT {VIEW_COLUMNS} FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL"  # noqa: S608
_FILTERS = {None: "", True: "WHERE deleted_at IS NOT NULL ", False: "WHERE deleted_at IS NULL "}
_LIST = {
    (order, deleted): (
        f"SELECT {VIEW_COLUMNS} FROM users {where}"  # noqa: S608
        f"ORDER BY created_at {order.value.upper()}, id {order.value.upper()} LIMIT $1 OFFSET $2"
    )
    for order in Order
    for deleted, where in _FILTERS.items()
}


def _view(row: asyncpg.Record) -> UserView:
    return UserView(*row)  # the statements select UserView's fields in its order


class PostgresUserReader:
    def __init__(self, reads: ReadRouting | Database) -> None:
        self._reads = reads if isinstance(reads, ReadRouting) else ReadRouting(reads, None)

    async def get(self, user_id: UUID) -> UserView | None:
        row = await self._reads.run(lambda conn: conn.fetchrow(_BY_ID, user_id))
        return None if row is None else _view(row)

    async def get_live_by_username(self, username: str) -> UserView | None:
        row = await self._reads.run(lambda conn: conn.fetchrow(_BY_USERNAME, username))
        return None if row is None else _view(row)

    async def list(self, *, offset: int, limit: int, order: Order, deleted: bool | None) -> list[UserView]:
        rows = await self._reads.run(lambda conn: conn.fetch(_LIST[order, deleted], limit, offset))
        return [_view(row) for row in rows]
