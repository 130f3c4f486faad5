from dataclasses import dataclass
from uuid import UUID

from user_service.application.errors import UserNotFound
from user_service.application.ports import UnitOfWork
from user_service.application.preconditions import NO_PRECONDITION, Precondition
from user_service.application.read_models import UserView
from user_service.domain.values import FullName


@dataclass(frozen=True, slots=True)
class ChangeFullName:
    user_id: UUID
    first_name: str
    last_name: str
    middle_name: str | None = None
    precondition: Precondition = NO_PRECONDITION


class ChangeFullNameHandler:
    """Replaces a live user's first, last and middle names (no middle name clears it). Emits
    the event `user.full_name_changed`; names that do not change change nothing and emit nothing.

    With a precondition, only if the user is still in the state the client saw.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, command: ChangeFullName) -> UserView:
        full_name = FullName.of(command.first_name, command.last_name, command.middle_name)
        async with self._uow as uow:
            user = await uow.users.get(command.user_id)
            if user is None:
                raise UserNotFound(command.user_id)
            command.precondition.check(user)  # on the user as locked, before the change
            user.change_full_name(full_name)
            await uow.commit()
        return UserView.of(user)
