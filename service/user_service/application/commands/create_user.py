from dataclasses import dataclass
from uuid import UUID

from user_service.application.ports import UnitOfWork
from user_service.application.read_models import UserView
from user_service.domain.ids import uuid7
from user_service.domain.user import User
from user_service.domain.values import FullName, Username


@dataclass(frozen=True, slots=True)
class CreateUser:
    username: str
    first_name: str
    last_name: str
    middle_name: str | None = None
    user_id: UUID | None = None


class CreateUserHandler:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, command: CreateUser) -> UserView:
        user = User.register(
            command.user_id or uuid7(),
            Username(command.username),
            FullName.of(command.first_name, command.last_name, command.middle_name),
        )
        async with self._uow as uow:
            uow.users.add(user)
            await uow.commit()
        return UserView.of(user)
