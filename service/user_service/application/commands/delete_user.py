from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from user_service.application.errors import UserNotFound
from user_service.application.ports import UnitOfWork
from user_service.application.preconditions import NO_PRECONDITION, Precondition
from user_service.application.read_models import UserView


@dataclass(frozen=True, slots=True)
class DeleteUser:
    user_id: UUID
    precondition: Precondition = NO_PRECONDITION


class DeleteUserHandler:
    """Deletes a live user, softly: it stays readable by id, shows no username (free again for others)
    and can change no more. Emits the event `user.deleted`.

    With a precondition, only if the user is still in the state the client saw.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, command: DeleteUser) -> UserView:
        async with self._uow as uow:
            user = await uow.users.get(command.user_id)
            if user is None:
                raise UserNotFound(command.user_id)
            command.precondition.check(user)  # on the user as locked, before the change
            user.delete(datetime.now(UTC))
            await uow.commit()
        return UserView.of(user)
