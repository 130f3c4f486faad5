from dataclasses import dataclass
from uuid import UUID

from user_service.application.errors import UserNotFound
from user_service.application.ports import UserReader
from user_service.application.read_models import UserView


@dataclass(frozen=True, slots=True)
class GetUser:
    user_id: UUID


class GetUserHandler:
    """One user by id, deleted ones too."""

    def __init__(self, reader: UserReader) -> None:
        self._reader = reader

    async def __call__(self, query: GetUser) -> UserView:
        view = await self._reader.get(query.user_id)
        if view is None:
            raise UserNotFound(query.user_id)
        return view
