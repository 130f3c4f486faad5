"""In-memory fakes of the application's ports, for unit tests of the handlers."""

from datetime import UTC, datetime
from types import TracebackType
from typing import Self
from uuid import UUID

from user_service.application.idempotency import IdempotentRequest, KeyAlreadyUsed
from user_service.application.ports import Order
from user_service.application.read_models import Page, Position, UserView
from user_service.domain.errors import UserIdTaken, UsernameTaken
from user_service.domain.events import UserEvent
from user_service.domain.user import User


class FakeRepository:
    def __init__(self, store: dict[UUID, User]) -> None:
        self._store = store
        self.seen: dict[UUID, User] = {}

    def add(self, user: User) -> None:
        self.seen[user.id] = user

    async def get(self, user_id: UUID) -> User | None:
        user = self._store.get(user_id)
        if user is not None:
            self.seen[user_id] = user
        return user


class FakeIdempotencyKeys:
    def __init__(self, store: dict[str, tuple[bytes, UserView]]) -> None:
        self.store = store
        self.pending: list[tuple[IdempotentRequest, UserView]] = []

    def record(self, request: IdempotentRequest, answer: UserView) -> None:
        self.pending.append((request, answer))


class FakeUnitOfWork:
    """Keeps users in a dict; `published` holds the events of committed work, in order."""

    def __init__(self) -> None:
        self.store: dict[UUID, User] = {}
        self.keys: dict[str, tuple[bytes, UserView]] = {}
        self.published: list[UserEvent] = []
        self.commits = 0
        self.users = FakeRepository(self.store)
        self.idempotency = FakeIdempotencyKeys(self.keys)

    async def __aenter__(self) -> Self:
        self.users = FakeRepository(self.store)
        self.idempotency = FakeIdempotencyKeys(self.keys)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.users.seen.clear()

    async def commit(self) -> None:
        for request, _ in self.idempotency.pending:
            if request.key in self.keys:
                raise KeyAlreadyUsed(*self.keys[request.key])
        for user in self.users.seen.values():
            for other in self.store.values():
                if other.id == user.id and other is not user:
                    raise UserIdTaken(user.id)
                if (
                    other is not user
                    and not other.deleted
                    and not user.deleted
                    and other.username.key == user.username.key
                ):
                    raise UsernameTaken(user.username.value)
        for user in self.users.seen.values():
            self.store[user.id] = user
            self.published.extend(user.pull_events())
        for request, answer in self.idempotency.pending:
            self.keys[request.key] = (request.fingerprint, answer)
        self.commits += 1


class FakeReader:
    def __init__(self, store: dict[UUID, User]) -> None:
        self._store = store

    async def get(self, user_id: UUID) -> UserView | None:
        user = self._store.get(user_id)
        return None if user is None else UserView.of(user)

    async def get_live_by_username(self, username: str) -> UserView | None:
        for user in self._store.values():
            if not user.deleted and user.username.key == username.lower():
                return UserView.of(user)
        return None

    async def list(
        self, *, offset: int, limit: int, order: Order, deleted: bool | None, after: Position | None = None
    ) -> Page:
        """Creation order is the store's; a user's position is its place in it, as a time."""
        positions = {
            u.id: Position(datetime.fromtimestamp(i, UTC), u.id) for i, u in enumerate(self._store.values())
        }
        users = [u for u in self._store.values() if deleted is None or u.deleted == deleted]
        if order is Order.DESC:
            users.reverse()
        if after is not None:
            later = (lambda p: p > after) if order is Order.ASC else (lambda p: p < after)
            users = [u for u in users if later(positions[u.id])]
            offset = 0
        page = users[offset : offset + limit + 1]
        following = positions[page[limit - 1].id] if len(page) > limit else None
        return Page([UserView.of(u) for u in page[:limit]], following)
