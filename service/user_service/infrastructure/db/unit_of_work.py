"""The write side: a unit of work over one asyncpg transaction, and the user repository inside it.

The repository remembers every aggregate it handed out or was given; at commit the unit of work
writes their changes and, in the same transaction, one outbox row per domain event. A statement
trigger on the outbox sends NOTIFY, which PostgreSQL delivers only if the transaction commits.
"""

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self
from uuid import UUID

import asyncpg

from user_service.application.read_models import UserView
from user_service.domain.errors import UserIdTaken, UsernameTaken
from user_service.domain.events import UserEvent
from user_service.domain.user import User
from user_service.domain.values import FullName, Name, Username
from user_service.infrastructure.db import tables
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.outbox.envelope import cloud_event

_SELECT_FOR_UPDATE = (
    "SELECT id, username, first_name, last_name, middle_name, deleted_at FROM users WHERE id = $1 FOR UPDATE"
)
_INSERT = "INSERT INTO users (id, username, first_name, last_name, middle_name) VALUES ($1, $2, $3, $4, $5)"
_UPDATE = (
    "UPDATE users SET username = $2, first_name = $3, last_name = $4, middle_name = $5, deleted_at = $6 "
    "WHERE id = $1"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (id, type, aggregate_id, payload, traceparent) VALUES ($1, $2, $3, $4::jsonb, $5)"
)

CommitObserver = Callable[[Sequence[UserEvent]], None]
TraceparentSource = Callable[[], str | None]


def _to_user(row: asyncpg.Record) -> User:
    middle = row["middle_name"]
    return User(
        row["id"],
        Username(row["username"]),
        FullName(
            Name(row["first_name"], "first_name"),
            Name(row["last_name"], "last_name"),
            None if middle is None else Name(middle, "middle_name"),
        ),
        row["deleted_at"],
    )


class PostgresUserRepository:
    def __init__(self, conn: asyncpg.pool.PoolConnectionProxy) -> None:
        self._conn = conn
        self.seen: dict[UUID, User] = {}
        self.new: set[UUID] = set()

    def add(self, user: User) -> None:
        self.seen[user.id] = user
        self.new.add(user.id)

    async def get(self, user_id: UUID) -> User | None:
        if user_id in self.seen:
            return self.seen[user_id]
        row = await self._conn.fetchrow(_SELECT_FOR_UPDATE, user_id)
        if row is None:
            return None
        user = _to_user(row)
        self.seen[user_id] = user
        return user

    async def flush(self, user: User) -> None:
        """Write the aggregate's state; a broken uniqueness rule comes back as its domain error."""
        name = user.full_name
        middle = None if name.middle is None else name.middle.value
        try:
            if user.id in self.new:
                await self._conn.execute(
                    _INSERT, user.id, user.username.value, name.first.value, name.last.value, middle
                )
                self.new.discard(user.id)
            else:
                await self._conn.execute(
                    _UPDATE,
                    user.id,
                    user.username.value,
                    name.first.value,
                    name.last.value,
                    middle,
                    user.deleted_at,
                )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == tables.USERS_PK:
                raise UserIdTaken(user.id) from exc
            if exc.constraint_name == tables.USERS_LIVE_USERNAME:
                raise UsernameTaken(user.username.value) from exc
            raise


class PostgresUnitOfWork:
    """One per request. Enter: a connection and a transaction; leave without commit: rollback."""

    users: PostgresUserRepository

    def __init__(
        self,
        db: Database,
        on_commit: CommitObserver | None = None,
        traceparent: TraceparentSource | None = None,
    ) -> None:
        self._db = db
        self._on_commit = on_commit
        self._traceparent = traceparent
        self._conn_cm = db.connection()
        self._tx: asyncpg.transaction.Transaction | None = None

    async def __aenter__(self) -> Self:
        conn = await self._conn_cm.__aenter__()
        try:
            self._tx = conn.transaction()
            await self._tx.start()
        except BaseException as exc:
            await self._conn_cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._conn = conn
        self.users = PostgresUserRepository(conn)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._tx is not None and not self._conn.is_closed():
                await self._tx.rollback()
        except Exception:  # noqa: S110 - the connection is released (and replaced) either way
            pass
        finally:
            self._tx = None
            await self._conn_cm.__aexit__(exc_type, exc, tb)

    async def commit(self) -> None:
        if self._tx is None:
            raise RuntimeError("commit outside the unit of work, or twice")
        events: list[UserEvent] = []
        rows: list[tuple[UUID, str, UUID, str, str | None]] = []
        traceparent = self._traceparent() if self._traceparent else None
        now = datetime.now(UTC)
        for user in self.users.seen.values():
            if not user.events:
                continue
            await self.users.flush(user)
            view = UserView.of(user)
            for event in user.pull_events():
                events.append(event)
                rows.append((event.event_id, event.type, user.id, cloud_event(event, view, now), traceparent))
        if len(rows) == 1:
            await self._conn.execute(_INSERT_OUTBOX, *rows[0])
        elif rows:
            await self._conn.executemany(_INSERT_OUTBOX, rows)
        await self._tx.commit()
        self._tx = None
        if self._on_commit is not None and events:
            self._on_commit(events)
