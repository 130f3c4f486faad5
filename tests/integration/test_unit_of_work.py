"""The write side on a real PostgreSQL: a commit writes the change and its event, a failure neither."""

import asyncio
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from user_service.application.commands.create_user import CreateUser, CreateUserHandler
from user_service.domain.errors import UserIdTaken, UsernameTaken
from user_service.domain.user import User
from user_service.domain.values import FullName, Username
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.reader import PostgresUserReader
from user_service.infrastructure.db.unit_of_work import PostgresUnitOfWork


def new_user(username: str = "alice") -> User:
    return User.register(uuid.uuid4(), Username(username), FullName.of("Alice", "Smith", "Ann"))


async def outbox(db: Database) -> list[dict[str, object]]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT type, aggregate_id, payload::text AS payload FROM outbox ORDER BY position"
        )
    return [{**dict(r), "payload": orjson.loads(r["payload"])} for r in rows]


async def test_commit_writes_user_and_one_outbox_row(clean_db: Database) -> None:
    user = new_user()
    async with PostgresUnitOfWork(clean_db) as uow:
        uow.users.add(user)
        await uow.commit()
    view = await PostgresUserReader(clean_db).get(user.id)
    assert view is not None
    assert view.representation() == {
        "id": str(user.id),
        "username": "alice",
        "first_name": "Alice",
        "last_name": "Smith",
        "middle_name": "Ann",
        "deleted": False,
    }
    (row,) = await outbox(clean_db)
    assert row["type"] == "user.created"
    assert row["aggregate_id"] == user.id
    envelope = row["payload"]
    assert envelope["data"] == view.representation()  # type: ignore[index]
    assert envelope["subject"] == str(user.id)  # type: ignore[index]


async def test_no_commit_no_row_no_event(clean_db: Database) -> None:
    user = new_user()
    async with PostgresUnitOfWork(clean_db) as uow:
        uow.users.add(user)
    assert await PostgresUserReader(clean_db).get(user.id) is None
    assert await outbox(clean_db) == []


async def test_failure_after_the_change_writes_neither(clean_db: Database) -> None:
    first = new_user("alice")
    async with PostgresUnitOfWork(clean_db) as uow:
        uow.users.add(first)
        await uow.commit()
    second, third = new_user("bob"), new_user("ALICE")
    async with PostgresUnitOfWork(clean_db) as uow:
        uow.users.add(second)  # a change that would succeed alone ...
        uow.users.add(third)  # ... with one that breaks a rule in the same transaction
        with pytest.raises(UsernameTaken):
            await uow.commit()
    assert await PostgresUserReader(clean_db).get(second.id) is None
    assert [r["type"] for r in await outbox(clean_db)] == ["user.created"]


async def test_constraint_names_map_to_domain_conflicts(clean_db: Database) -> None:
    user = new_user()
    async with PostgresUnitOfWork(clean_db) as uow:
        uow.users.add(user)
        await uow.commit()
    twin = User.register(user.id, Username("other"), FullName.of("A", "B"))
    async with PostgresUnitOfWork(clean_db) as uow:
        uow.users.add(twin)
        with pytest.raises(UserIdTaken):
            await uow.commit()


async def test_repository_get_locks_the_user_until_commit(clean_db: Database) -> None:
    """Two changes of one user are serialised, so their events are in commit order."""
    user = new_user()
    async with PostgresUnitOfWork(clean_db) as uow:
        uow.users.add(user)
        await uow.commit()
    order: list[str] = []

    async def rename(to: str, hold: float) -> None:
        async with PostgresUnitOfWork(clean_db) as uow:
            loaded = await uow.users.get(user.id)
            assert loaded is not None
            order.append(f"locked {to}")
            await asyncio.sleep(hold)
            loaded.change_username(Username(to))
            await uow.commit()

    first = asyncio.create_task(rename("first", 0.3))
    await asyncio.sleep(0.1)
    await rename("second", 0)
    await first
    assert order == ["locked first", "locked second"]
    types = [(r["type"], r["payload"]["data"]["username"]) for r in await outbox(clean_db)]  # type: ignore[index]
    assert types == [
        ("user.created", "alice"),
        ("user.username_changed", "first"),
        ("user.username_changed", "second"),
    ]


async def test_deleted_at_round_trips(clean_db: Database) -> None:
    handler = CreateUserHandler(PostgresUnitOfWork(clean_db))
    view = await handler(CreateUser(username="alice", first_name="A", last_name="B"))
    async with PostgresUnitOfWork(clean_db) as uow:
        user = await uow.users.get(view.id)
        assert user is not None
        user.delete(datetime.now(UTC))
        await uow.commit()
    async with PostgresUnitOfWork(clean_db) as uow:
        again = await uow.users.get(view.id)
        assert again is not None
        assert again.deleted


async def test_concurrent_changes_count_one_version_each_in_commit_order(clean_db: Database) -> None:
    """The version is the aggregate's, written under its row lock: no change is lost or counted twice,
    and the events' `sequence` follows the outbox's commit order."""
    user = new_user()
    async with PostgresUnitOfWork(clean_db) as uow:
        uow.users.add(user)
        await uow.commit()

    async def rename(to: str) -> None:
        async with PostgresUnitOfWork(clean_db) as uow:
            loaded = await uow.users.get(user.id)
            assert loaded is not None
            await asyncio.sleep(0.01)
            loaded.change_username(Username(to))
            await uow.commit()

    await asyncio.gather(*(rename(f"name{i}") for i in range(10)))
    view = await PostgresUserReader(clean_db).get(user.id)
    assert view is not None
    assert view.version == 11
    envelopes = [r["payload"] for r in await outbox(clean_db)]
    assert [e["sequence"] for e in envelopes] == [f"{v:010d}" for v in range(1, 12)]  # type: ignore[index]
    assert envelopes[-1]["data"]["username"] == view.username  # type: ignore[index]
