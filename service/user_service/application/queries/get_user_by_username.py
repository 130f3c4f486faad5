from dataclasses import dataclass

from user_service.application.errors import UserNotFound
from user_service.application.ports import UserReader
from user_service.application.read_models import UserView


@dataclass(frozen=True, slots=True)
class GetUserByUsername:
    username: str


class GetUserByUsernameHandler:
    """The live user holding a username, ignoring case."""

    def __init__(self, reader: UserReader) -> None:
        self._reader = reader

    async def __call__(self, query: GetUserByUsername) -> UserView:
        view = await self._reader.get_live_by_username(query.username)
        if view is None:
            raise UserNotFound(query.username)
        return view
