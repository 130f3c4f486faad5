from dataclasses import dataclass

from user_service.application.ports import Order, UserReader
from user_service.application.read_models import UserView


@dataclass(frozen=True, slots=True)
class ListUsers:
    offset: int = 0
    limit: int = 1000
    order: Order = Order.ASC
    deleted: bool | None = None


class ListUsersHandler:
    """A page of users by creation time, then id; `deleted` filters, None means all."""

    def __init__(self, reader: UserReader) -> None:
        self._reader = reader

    async def __call__(self, query: ListUsers) -> list[UserView]:
        return await self._reader.list(
            offset=query.offset, limit=query.limit, order=query.order, deleted=query.deleted
        )
