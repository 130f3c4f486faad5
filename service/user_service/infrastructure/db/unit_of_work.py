"""The write side: a unit of work over one asyncpg connection, and the user repository inside it.

The repository remembers every aggregate it handed out or was given; at commit the unit of work writes
each changed aggregate together with one outbox row per domain event in ONE statement (a data-modifying
`WITH`), so the change and its events are atomic even without an explicit transaction. A transaction is
begun only when it is needed: when the repository reads an aggregate to change it (the row lock orders a
user's changes, and so its events), or when more than one statement must commit together. A create is so
one round trip, a change four (BEGIN, SELECT … FOR UPDATE, the write, COMMIT). A statement trigger on the
outbox sends NOTIFY, which PostgreSQL delivers only once the change has committed. A create made with an
idempotency key writes the key in that same statement (infrastructure/db/idempotency.py).

With a replica serving reads (`track_position`), a commit is followed by one more round trip that reads
the primary's WAL position, at or past the commit's (a commit returns once its WAL is written): the
request's consistency token, with which the client's next reads see this write (replica.py).
"""

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import asyncpg

from user_service.application.idempotency import KeyAlreadyUsed
from user_service.application.read_models import UserView
from user_service.domain.errors import DomainError, UserIdTaken, UsernameTaken
from user_service.domain.events import UserEvent
from user_service.domain.user import User
from user_service.infrastructure.db import idempotency, tables
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.idempotency import PendingKey, PostgresIdempotencyKeys
from user_service.infrastructure.db.replica import committed_at, parse_lsn
from user_service.infrastructure.db.rows import STATE_COLUMNS, row_of, row_values, user_of
from user_service.infrastructure.outbox.envelope import cloud_event

_COLUMNS = ", ".join(STATE_COLUMNS)
_PARAMETERS = ", ".join(f"${i}" for i in range(1, len(STATE_COLUMNS) + 1))
_ID = f"${STATE_COLUMNS.index('id') + 1}"
# Constant text built from the column names; every value is a parameter.
_SELECT_FOR_UPDATE = f"SELECT {_COLUMNS} FROM users WHERE id = $1 FOR UPDATE"  # noqa: S608
_INSERT = f"INSERT INTO users ({_COLUMNS}) VALUES ({_PARAMETERS})"  # noqa: S608
_UPDATE = "UPDATE users SET {} WHERE id = {}".format(  # noqa: S608
    ", ".join(f"{column} = ${i}" for i, column in enumerate(STATE_COLUMNS, 1) if column != "id"), _ID
)
_OUTBOX_COLUMNS = 5  # id, type, aggregate_id, payload, traceparent
_POSITION = "SELECT pg_current_wal_lsn()::text"

CommitObserver = Callable[[Sequence[UserEvent]], None]
TraceparentSource = Callable[[], str | None]


@functools.cache
def _write_with_events(write: str, write_args: int, events: int, keyed: bool = False) -> str:
    """`WITH written AS (<write>) INSERT INTO outbox …`: the aggregate's write and its outbox rows, and
    when `keyed` the idempotency key's row, its parameters after the others."""
    values = ", ".join(
        "({})".format(
            ", ".join(
                f"${write_args + i * _OUTBOX_COLUMNS + c + 1}{'::jsonb' if c == 3 else ''}"
                for c in range(_OUTBOX_COLUMNS)
            )
        )
        for i in range(events)
    )
    key = f", {idempotency.remembered(write_args + events * _OUTBOX_COLUMNS + 1)}" if keyed else ""
    # Constant fragments only: every value is a parameter.
    return (
        f"WITH written AS ({write}){key} "  # noqa: S608
        f"INSERT INTO outbox (id, type, aggregate_id, payload, traceparent) VALUES {values}"
    )


class PostgresUserRepository:
    def __init__(self, uow: "PostgresUnitOfWork") -> None:
        self._uow = uow
        self.seen: dict[UUID, User] = {}
        self.new: set[UUID] = set()

    def add(self, user: User) -> None:
        self.seen[user.id] = user
        self.new.add(user.id)

    async def get(self, user_id: UUID) -> User | None:
        """The user, locked until the unit of work ends, so its changes (and events) are in commit order."""
        if user_id in self.seen:
            return self.seen[user_id]
        conn = await self._uow.in_transaction()
        row = await conn.fetchrow(_SELECT_FOR_UPDATE, user_id)
        if row is None:
            return None
        user = user_of(row)
        self.seen[user_id] = user
        return user

    def write(self, user: User) -> tuple[str, list[Any]]:
        """The statement and arguments that write the aggregate's state."""
        return _INSERT if user.id in self.new else _UPDATE, row_values(row_of(user))


class PostgresUnitOfWork:
    """One per request. Enter: a connection; leave without commit: whatever was begun is rolled back."""

    users: PostgresUserRepository
    idempotency: PostgresIdempotencyKeys

    def __init__(
        self,
        db: Database,
        on_commit: CommitObserver | None = None,
        traceparent: TraceparentSource | None = None,
        track_position: bool = False,
        idempotency_key_lifetime: float = 24 * 3600,
    ) -> None:
        self._db = db
        self._track_position = track_position
        self._on_commit = on_commit
        self._traceparent = traceparent
        self._key_lifetime = idempotency_key_lifetime
        self._conn_cm = db.connection()
        self._tx: asyncpg.transaction.Transaction | None = None
        self._open = False

    async def __aenter__(self) -> Self:
        self._conn = await self._conn_cm.__aenter__()
        self._open = True
        self.users = PostgresUserRepository(self)
        self.idempotency = PostgresIdempotencyKeys()
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
            self._open = False
            await self._conn_cm.__aexit__(exc_type, exc, tb)

    async def in_transaction(self) -> asyncpg.pool.PoolConnectionProxy:
        """The connection, inside a transaction begun now if none is."""
        if self._tx is None:
            self._tx = self._conn.transaction()
            await self._tx.start()
        return self._conn

    async def commit(self) -> None:
        if not self._open:
            raise RuntimeError("commit outside the unit of work, or twice")
        traceparent = self._traceparent() if self._traceparent else None
        now = datetime.now(UTC)
        changed = [user for user in self.users.seen.values() if user.events]
        keys = self.idempotency.pending
        if keys and (len(changed) != 1 or changed[0].id not in keys or self._tx is not None):
            raise RuntimeError("an idempotency key answers a unit of work that creates one user, alone")
        if len(changed) > 1:
            await self.in_transaction()
        events: list[UserEvent] = []
        for user in changed:
            view = UserView.of(user)
            user_events = user.pull_events()
            write, args = self.users.write(user)
            key = keys.get(user.id)
            statement = _write_with_events(write, len(args), len(user_events), key is not None)
            for event in user_events:
                args += [event.event_id, event.type, user.id, cloud_event(event, view, now), traceparent]
            if key is None:
                await self._execute(user, statement, args)
            else:
                await self._execute_keyed(user, statement, [*args, *key.arguments(self._key_lifetime)], key)
            self.users.new.discard(user.id)
            events.extend(user_events)
        if self._tx is not None:
            await self._tx.commit()
            self._tx = None
        self._open = False
        if self._on_commit is not None and events:
            self._on_commit(events)
        if self._track_position and events:
            committed_at.set(parse_lsn(await self._conn.fetchval(_POSITION)))

    async def _execute(self, user: User, statement: str, args: list[Any]) -> None:
        """Run one write; a broken uniqueness rule comes back as its domain error, by constraint name."""
        try:
            await self._conn.execute(statement, *args)
        except asyncpg.UniqueViolationError as exc:
            if (conflict := _conflict(user, exc)) is None:
                raise
            raise conflict from exc

    async def _execute_keyed(self, user: User, statement: str, args: list[Any], key: PendingKey) -> None:
        """Run a create that records an idempotency key (a statement of its own, in no transaction).

        Whatever uniqueness rule it breaks (the key's, or the username's or id's when a request with the
        same key created the user first), the key decides: recorded and live, `KeyAlreadyUsed` with its
        answer; expired but not purged yet, it is deleted and the create tried once more; not recorded,
        the rule's own conflict.
        """
        for attempt in range(2):
            try:
                await self._conn.execute(statement, *args)
            except asyncpg.UniqueViolationError as exc:
                earlier = await self._conn.fetchrow(idempotency.RECALL, key.request.key)
                if earlier is not None and earlier["live"]:
                    if self._track_position:  # the replay's token: at or past the first answer's commit
                        committed_at.set(parse_lsn(await self._conn.fetchval(_POSITION)))
                    raise KeyAlreadyUsed(
                        earlier["fingerprint"], idempotency.answer_of(earlier["answer"])
                    ) from None
                expired = earlier is not None or exc.constraint_name == tables.IDEMPOTENCY_KEYS_PK
                if attempt == 0 and expired:
                    await self._conn.execute(idempotency.FORGET_EXPIRED, key.request.key)
                    continue
                if (conflict := _conflict(user, exc)) is None:
                    raise
                raise conflict from exc
            else:
                return


def _conflict(user: User, exc: asyncpg.UniqueViolationError) -> DomainError | None:
    """The domain error a broken uniqueness rule means, by constraint name."""
    if exc.constraint_name == tables.USERS_PK:
        return UserIdTaken(user.id)
    if exc.constraint_name == tables.USERS_LIVE_USERNAME:
        return UsernameTaken(user.username.value)
    return None
