"""The relay's batch against a broker that rejects one event: no event of that user overtakes it.

The exchange is a fake that records what reached the broker and rejects chosen events the way a
publisher-confirm nack surfaces in aio-pika (an exception from `publish`); the outbox is real.
"""

import uuid
from typing import Any

import pytest

from user_service.domain.user import User
from user_service.domain.values import FullName, Username
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.unit_of_work import PostgresUnitOfWork
from user_service.infrastructure.outbox.relay import OutboxRelay, PublishIncomplete, RelaySettings


class Rejected(Exception):
    pass


class FakeExchange:
    """Publishes in call order; a rejected event is not on the broker."""

    def __init__(self, reject: set[str]) -> None:
        self.reject = reject
        self.on_broker: list[tuple[str, str]] = []  # (user id, event type), in arrival order

    async def publish(self, message: Any, routing_key: str, timeout: float | None = None) -> None:
        if message.message_id in self.reject:
            self.reject.discard(message.message_id)  # rejected once, accepted when published again
            raise Rejected(message.message_id)
        self.on_broker.append((message.message_id, routing_key))


async def commit(db: Database, user: User) -> None:
    async with PostgresUnitOfWork(db) as uow:
        uow.users.add(user)
        await uow.commit()


async def change(db: Database, user_id: uuid.UUID, name: str) -> None:
    async with PostgresUnitOfWork(db) as uow:
        user = await uow.users.get(user_id)
        assert user is not None
        user.change_username(Username(name))
        await uow.commit()


async def events(db: Database) -> dict[str, tuple[str, str, bool]]:
    """Event id -> (user id, type, published)."""
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT id, aggregate_id, type, published_at FROM outbox ORDER BY position")
    return {str(r["id"]): (str(r["aggregate_id"]), r["type"], r["published_at"] is not None) for r in rows}


@pytest.fixture
def relay(database_url: str) -> OutboxRelay:
    return OutboxRelay(RelaySettings(database_url=database_url, broker_url="amqp://unused"))


async def test_a_rejected_event_is_not_overtaken_by_a_later_event_of_its_user(
    clean_db: Database, relay: OutboxRelay
) -> None:
    ann = User.register(uuid.uuid4(), Username("ann"), FullName.of("Ann", "A"))
    bob = User.register(uuid.uuid4(), Username("bob"), FullName.of("Bob", "B"))
    await commit(clean_db, ann)
    await commit(clean_db, bob)
    await change(clean_db, ann.id, "ann2")
    await change(clean_db, bob.id, "bob2")
    before = await events(clean_db)
    ann_created = next(i for i, (u, t, _) in before.items() if u == str(ann.id) and t == "user.created")
    exchange = FakeExchange(reject={ann_created})

    async with clean_db.connection() as conn:
        with pytest.raises(PublishIncomplete, match="2 of 4 events not confirmed"):
            await relay._publish_batch(conn, exchange)  # type: ignore[arg-type]
        # Nothing of Ann's passed her rejected event; Bob's events did not wait for hers.
        assert [(who == str(bob.id), t) for who, t in ((before[i][0], t) for i, t in exchange.on_broker)] == [
            (True, "user.created"),
            (True, "user.username_changed"),
        ]
        state = await events(clean_db)
        assert {(u, t) for u, t, published in state.values() if published} == {
            (str(bob.id), "user.created"),
            (str(bob.id), "user.username_changed"),
        }

        assert await relay._publish_batch(conn, exchange) == 2  # type: ignore[arg-type]

    kinds = {str(ann.id): "ann", str(bob.id): "bob"}
    arrived = [(kinds[before[i][0]], t) for i, t in exchange.on_broker]
    assert [e for e in arrived if e[0] == "ann"] == [
        ("ann", "user.created"),
        ("ann", "user.username_changed"),
    ]
    assert [e for e in arrived if e[0] == "bob"] == [
        ("bob", "user.created"),
        ("bob", "user.username_changed"),
    ]
    assert all(published for _, _, published in (await events(clean_db)).values())


async def test_a_batch_of_one_event_per_user_goes_out_at_once(clean_db: Database, relay: OutboxRelay) -> None:
    users = [User.register(uuid.uuid4(), Username(f"u{i}"), FullName.of("U", "V")) for i in range(20)]
    for user in users:
        await commit(clean_db, user)
    ids = list(await events(clean_db))
    exchange = FakeExchange(reject={ids[5]})
    async with clean_db.connection() as conn:
        with pytest.raises(PublishIncomplete, match="1 of 20 events not confirmed"):
            await relay._publish_batch(conn, exchange)  # type: ignore[arg-type]
        # Other users' events do not wait for the rejected one: all 19 are on the broker and marked.
        assert len(exchange.on_broker) == 19
        assert [i for i, (_, _, published) in (await events(clean_db)).items() if not published] == [ids[5]]
        assert await relay._publish_batch(conn, exchange) == 1  # type: ignore[arg-type]
    assert exchange.on_broker[-1][0] == ids[5]
