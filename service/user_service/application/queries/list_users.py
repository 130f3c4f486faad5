from dataclasses import dataclass

from user_service.application.ports import Order, UserReader
from user_service.application.read_models import Page, Position


@dataclass(frozen=True, slots=True)
class ListUsers:
    offset: int = 0
    limit: int = 1000
    order: Order = Order.ASC
    deleted: bool | None = None
    after: Position | None = None


class ListUsersHandler:
    """A page of users by creation time, then id; `deleted` filters, None means all.

    A page names where the next one starts: walking from page to page that way, every user that existed
    when the walk began is seen exactly once, in order, however many users are created or deleted
    meanwhile, and each page costs the same at any depth. `offset` counts users from the start instead.
    """

    def __init__(self, reader: UserReader) -> None:
        self._reader = reader

    async def __call__(self, query: ListUsers) -> Page:
        return await self._reader.list(
            offset=query.offset,
            limit=query.limit,
            order=query.order,
            deleted=query.deleted,
            after=query.after,
        )
