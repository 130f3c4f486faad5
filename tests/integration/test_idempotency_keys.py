"""Idempotency keys in PostgreSQL: written with the create, nothing without it, purged in bounded batches."""

import pytest

from user_service.application.commands.create_user import CreateUser, CreateUserHandler
from user_service.domain.errors import UsernameTaken
from user_service.infrastructure.db.database import Database, PoolSettings
from user_service.infrastructure.db.idempotency import purge_expired_keys
from user_service.infrastructure.db.unit_of_work import PostgresUnitOfWork


async def keys(db: Database) -> list[str]:
    async with db.connection() as conn:
        return [r["key"] for r in await conn.fetch("SELECT key FROM idempotency_keys ORDER BY key")]


async def test_the_key_is_written_with_the_create_or_not_at_all(clean_db: Database) -> None:
    create = CreateUserHandler(PostgresUnitOfWork(clean_db, idempotency_key_lifetime=60))
    view = await create(CreateUser("alice", "Alice", "Smith", idempotency_key='a"b'))
    with pytest.raises(UsernameTaken):
        await CreateUserHandler(PostgresUnitOfWork(clean_db))(
            CreateUser("ALICE", "Alice", "Smith", idempotency_key="second")
        )
    assert await keys(clean_db) == ['a"b']
    async with clean_db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT answer, expires_at - created_at AS lifetime FROM idempotency_keys WHERE key = $1", 'a"b'
        )
    assert row is not None
    assert 59 < row["lifetime"].total_seconds() < 61
    assert '"version": 1' in row["answer"]
    assert f'"id": "{view.id}"' in row["answer"]


async def test_expired_keys_are_purged_in_bounded_batches_until_none_is_left(clean_db: Database) -> None:
    async with clean_db.connection() as conn:
        await conn.execute(
            "INSERT INTO idempotency_keys (key, fingerprint, answer, expires_at) "
            "SELECT 'old' || i, '\\x00', '{}', clock_timestamp() - interval '1 minute' "
            "FROM generate_series(1, 2500) AS i"
        )
        await conn.execute(
            "INSERT INTO idempotency_keys (key, fingerprint, answer, expires_at) "
            "SELECT 'live' || i, '\\x00', '{}', clock_timestamp() + interval '1 hour' "
            "FROM generate_series(1, 3) AS i"
        )
        statements: list[str] = []
        conn.add_query_logger(lambda record: statements.append(record.query))
        deleted = await purge_expired_keys(conn, batch=1000)
    assert deleted == 2500
    assert len(statements) == 3  # 1000, 1000, 500: each statement bounded
    assert await keys(clean_db) == ["live1", "live2", "live3"]


async def test_a_create_is_one_statement_with_or_without_a_key(clean_db: Database, database_url: str) -> None:
    """One round trip either way; without a key, the statement creates have always run (no key in it)."""
    db = Database(PoolSettings(dsn=database_url, min_size=1, max_size=1))
    await db.open()
    statements: list[str] = []
    try:
        async with db.connection() as conn:  # the pool's one connection, logged from now on
            conn.add_query_logger(lambda record: statements.append(record.query))
        await CreateUserHandler(PostgresUnitOfWork(db))(CreateUser("alice", "Alice", "Smith"))
        await CreateUserHandler(PostgresUnitOfWork(db))(
            CreateUser("bob", "Bob", "Smith", idempotency_key="k")
        )
    finally:
        await db.close()
    without, keyed = statements
    assert "idempotency_keys" not in without
    assert without.startswith("WITH written AS (INSERT INTO users")
    assert keyed.startswith(
        without.split(" INSERT INTO outbox")[0] + ", remembered AS (INSERT INTO idempotency_keys"
    )
