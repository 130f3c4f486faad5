"""The ports the use cases need, as Protocols; infrastructure provides them, tests fake them."""

from enum import StrEnum
from types import TracebackType
from typing import Protocol, Self
from uuid import UUID

from user_service.application.idempotency import IdempotentRequest
from user_service.application.read_models import Page, Position, UserView
from user_service.domain.user import User


class UserRepository(Protocol):
    """Aggregates by id. `get` reserves the user for the rest of the unit of work."""

    def add(self, user: User) -> None: ...

    async def get(self, user_id: UUID) -> User | None: ...


class IdempotencyKeys(Protocol):
    """The answers of requests made with an idempotency key, kept for the keys' lifetime."""

    def record(self, request: IdempotentRequest, answer: UserView) -> None:
        """Write `request`'s key with the creation of `answer`'s user, in the same write (a unit of work
        that creates that one user). The commit raises `KeyAlreadyUsed`, having written nothing, when
        the key was recorded before (by a request that committed first, if they raced)."""


class UnitOfWork(Protocol):
    """One transaction: changes of the aggregates it saw and their events are written together, or not at all.

    Handlers commit explicitly, exactly once; leaving without commit rolls back.
    """

    @property
    def users(self) -> UserRepository: ...

    @property
    def idempotency(self) -> IdempotencyKeys: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def commit(self) -> None: ...


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"


class UserReader(Protocol):
    """The read side: read models straight from storage, no aggregates."""

    async def get(self, user_id: UUID) -> UserView | None: ...

    async def get_live_by_username(self, username: str) -> UserView | None: ...

    async def list(
        self, *, offset: int, limit: int, order: Order, deleted: bool | None, after: Position | None = None
    ) -> Page:
        """Up to `limit` users in `order` of (creation time, id), filtered by `deleted` (None: all):
        those after `after` (a keyset: a page costs the same at any depth), else after the first `offset`."""
