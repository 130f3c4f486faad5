from dataclasses import dataclass
from uuid import UUID

from user_service.application.errors import UserNotFound
from user_service.application.ports import UnitOfWork
from user_service.application.preconditions import NO_PRECONDITION, Precondition
from user_service.application.read_models import UserView
from user_service.domain.values import Username


@dataclass(frozen=True, slots=True)
class ChangeUsername:
    user_id: UUID
    username: str
    precondition: Precondition = NO_PRECONDITION


class ChangeUsernameHandler:
    """Renames a live user. The new username must be free among live users, ignoring case. Emits
    the event `user.username_changed`; a username that does not change changes nothing and emits nothing.

    With a precondition, only if the user is still in the state the client saw.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, command: ChangeUsername) -> UserView:
        username = Username(command.username)
        async with self._uow as uow:
            user = await uow.users.get(command.user_id)
            if user is None:
                raise UserNotFound(command.user_id)
            command.precondition.check(user)  # on the user as locked, before the change
            user.change_username(username)
            await uow.commit()
        return UserView.of(user)
