import hashlib
import json
from dataclasses import dataclass
from uuid import UUID

from user_service.application.errors import IdempotencyKeyReused
from user_service.application.idempotency import IdempotentRequest, KeyAlreadyUsed
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
    idempotency_key: str | None = None

    def fingerprint(self) -> bytes:
        """The request behind an idempotency key: the same fields make the same fingerprint."""
        fields = [self.username, self.first_name, self.last_name, self.middle_name, self.user_id]
        return hashlib.sha256(json.dumps(fields, default=str).encode()).digest()


class CreateUserHandler:
    """Creates a user: a username and a full name, and its id (the client's `user_id`, else a new
    UUIDv7). The username must be free among live users, ignoring case; an id names one user forever,
    deleted or not. Emits the event `user.created`.

    With an idempotency key, a retry of the same request is answered as the first one was and creates
    nothing; the same key with another request is refused.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def __call__(self, command: CreateUser) -> UserView:
        user = User.register(
            command.user_id or uuid7(),
            Username(command.username),
            FullName.of(command.first_name, command.last_name, command.middle_name),
        )
        view = UserView.of(user)
        key = command.idempotency_key
        request = None if key is None else IdempotentRequest(key, command.fingerprint())
        async with self._uow as uow:
            uow.users.add(user)
            if request is not None:
                uow.idempotency.record(request, view)
            try:
                await uow.commit()
            except KeyAlreadyUsed as used:
                if request is None or used.fingerprint != request.fingerprint:
                    raise IdempotencyKeyReused(str(key)) from None
                return used.answer  # the retry of a create that was made: its first answer, nothing new
        return view
