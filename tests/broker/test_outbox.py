"""The outbox on real PostgreSQL and RabbitMQ: nothing lost, nothing invented, in commit order per user."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import make_settings
from tests.support.broker import Consumer
from tests.support.fault_proxy import FaultProxy
from user_service.domain.user import User
from user_service.domain.values import FullName, Username
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.unit_of_work import PostgresUnitOfWork
from user_service.infrastructure.outbox.relay import OutboxRelay, RelaySettings
from user_service.infrastructure.outbox.status import BrokerState, RelayStatus
from user_service.main.app import create_app

pytestmark = pytest.mark.broker


@contextlib.asynccontextmanager
async def running_app(database_url: str, broker_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(make_settings(database_url, broker_url=broker_url, outbox_poll_interval=0.2))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def outbox_ids(db: Database, published: bool | None = None) -> list[str]:
    where = {None: "", True: "WHERE published_at IS NOT NULL", False: "WHERE published_at IS NULL"}[published]
    async with db.connection() as conn:
        rows = await conn.fetch(f"SELECT id FROM outbox {where} ORDER BY position")
    return [str(r["id"]) for r in rows]


async def outbox_drained(db: Database, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while await outbox_ids(db, published=False):
            await asyncio.sleep(0.02)


def relay_settings(database_url: str, broker_url: str) -> RelaySettings:
    return RelaySettings(
        database_url=database_url,
        broker_url=broker_url,
        poll_interval=0.2,
        backoff_max=1.0,
        lock_retry_interval=0.2,
    )


async def test_each_command_publishes_exactly_its_event(
    clean_db: Database, database_url: str, broker_url: str, consumer: Consumer
) -> None:
    async with running_app(database_url, broker_url) as client:
        created = (
            await client.post("/users/", json={"username": "alice", "first_name": "A", "last_name": "B"})
        ).json()
        user_id = created["id"]
        renamed = (await client.put(f"/users/{user_id}/username", json={"username": "alicia"})).json()
        named = (
            await client.put(
                f"/users/{user_id}/full-name",
                json={"first_name": "Al", "last_name": "Ice", "middle_name": "M"},
            )
        ).json()
        deleted = (await client.delete(f"/users/{user_id}")).json()
        # Rejected commands: no events.
        assert (
            await client.post("/users/", json={"username": "1", "first_name": "A", "last_name": "B"})
        ).status_code == 422
        assert (await client.delete(f"/users/{user_id}")).status_code == 409
        assert (
            await client.post(
                "/users/", json={"user_id": user_id, "username": "x", "first_name": "A", "last_name": "B"}
            )
        ).status_code == 409
        envelopes = await consumer.wait_for(4, {user_id})
        await asyncio.sleep(0.5)  # anything invented would arrive by now
        await outbox_drained(clean_db)  # every confirm is in before the relay stops
    envelopes = consumer.envelopes({user_id})
    assert [e["type"] for e in envelopes] == [
        "user.created",
        "user.username_changed",
        "user.full_name_changed",
        "user.deleted",
    ]
    assert [e["data"] for e in envelopes] == [created, renamed, named, deleted]
    # The user's version after each change: the events of one user in order, without the broker's help.
    assert [e["sequence"] for e in envelopes] == ["0000000001", "0000000002", "0000000003", "0000000004"]
    messages = [
        m for m in consumer.messages if m.routing_key and m.message_id in {e["id"] for e in envelopes}
    ]
    for envelope, message in zip(envelopes, messages, strict=True):
        assert envelope["specversion"] == "1.0"
        assert envelope["source"] == "user-service"
        assert envelope["subject"] == user_id
        assert envelope["datacontenttype"] == "application/json"
        assert uuid.UUID(envelope["id"]).version == 7
        assert datetime.fromisoformat(envelope["time"]).utcoffset() is not None
        assert envelope["time"].endswith("Z")
        assert message.message_id == envelope["id"]
        assert message.routing_key == envelope["type"]
        assert message.content_type == "application/cloudevents+json"
        assert message.delivery_mode == 2
        assert message.timestamp is not None
        assert message.headers["traceparent"]  # type: ignore[index]
    assert len(await outbox_ids(clean_db)) == 4
    assert await outbox_ids(clean_db, published=False) == []


async def test_broker_outage_loses_nothing_and_keeps_order(
    clean_db: Database, database_url: str, broker_url: str, consumer: Consumer
) -> None:
    host_port = broker_url.rsplit("@", 1)[1].split("/", maxsplit=1)[0]
    host, port = host_port.split(":")
    proxy = FaultProxy((host, int(port))).start()
    proxied = broker_url.replace(host_port, f"127.0.0.1:{proxy.port}")
    try:
        async with running_app(database_url, proxied) as client:
            first = (
                await client.post("/users/", json={"username": "before", "first_name": "A", "last_name": "B"})
            ).json()
            await consumer.wait_for(1, {first["id"]})
            # Delivered is not yet confirmed: wait for the confirm, so the outage starts with no backlog.
            await outbox_drained(clean_db)
            proxy.cut()
            ids: list[str] = []
            for i in range(500):
                response = await client.post(
                    "/users/", json={"username": f"out{i}", "first_name": "A", "last_name": "B"}
                )
                assert response.status_code == 201  # the API keeps serving without the broker
                ids.append(response.json()["id"])
            for user_id in ids[:100]:
                response = await client.put(
                    f"/users/{user_id}/username", json={"username": f"r{user_id[-8:]}x"}
                )
                assert response.status_code == 200
            ready = (await client.get("/healthcheck/ready")).json()
            assert ready["checks"]["broker"] == "down"
            assert len(await outbox_ids(clean_db, published=False)) == 600
            proxy.restore()
            envelopes = await consumer.wait_for(600, set(ids), timeout=60)
            await outbox_drained(clean_db)  # every delivered event is also confirmed and marked
    finally:
        proxy.close()
    by_id = {e["id"]: e for e in envelopes}  # at least once: duplicates collapse on the event id
    delivered = set(by_id) | {e["id"] for e in consumer.envelopes({first["id"]})}
    assert delivered == set(await outbox_ids(clean_db))  # none missing, none invented
    per_user: dict[str, list[str]] = defaultdict(list)
    for envelope in envelopes:
        if not per_user[envelope["subject"]] or per_user[envelope["subject"]][-1] != envelope["id"]:
            per_user[envelope["subject"]].append(envelope["type"])
    assert set(per_user) == set(ids)
    for user_id in ids[:100]:
        assert _deduplicated(per_user[user_id]) == ["user.created", "user.username_changed"]
    for user_id in ids[100:]:
        assert _deduplicated(per_user[user_id]) == ["user.created"]


def _deduplicated(types: list[str]) -> list[str]:
    out: list[str] = []
    for t in types:
        if t not in out:
            out.append(t)
        elif out[-1] != t:
            raise AssertionError(f"out of order: {types}")
    return out


async def make_backlog(db: Database, count: int, prefix: str = "b") -> list[str]:
    """`count` users created in one transaction: their events wait in the outbox."""
    users = [
        User.register(uuid.uuid4(), Username(f"{prefix}{i}"), FullName.of("Back", "Log"))
        for i in range(count)
    ]
    async with PostgresUnitOfWork(db) as uow:
        for user in users:
            uow.users.add(user)
        await uow.commit()
    return [str(u.id) for u in users]


async def test_relay_killed_mid_batch_delivers_everything_after_restart(
    clean_db: Database, database_url: str, broker_url: str, consumer: Consumer
) -> None:
    ids = set(await make_backlog(clean_db, 5000))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "LOG_FORMAT": "json",
        "OUTBOX_BATCH_SIZE": "200",
        "LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "user_service.main.cli", "relay"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        async with asyncio.timeout(30):
            while len(consumer.envelopes(ids)) < 200:
                await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    unpublished = await outbox_ids(clean_db, published=False)
    assert unpublished, "the relay finished before it was killed; nothing was interrupted"
    second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        envelopes = await consumer.wait_for(5000, ids, timeout=60)
        async with asyncio.timeout(10):
            while await outbox_ids(clean_db, published=False):
                await asyncio.sleep(0.1)
    finally:
        second.terminate()
        assert second.wait(10) == 0  # SIGTERM: a clean stop
    assert {e["subject"] for e in envelopes} == ids


async def test_two_relays_one_publishes_the_other_takes_over(
    clean_db: Database, database_url: str, broker_url: str, consumer: Consumer
) -> None:
    relays = [
        OutboxRelay(relay_settings(database_url, broker_url), RelayStatus(enabled=True)) for _ in range(2)
    ]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        async with asyncio.timeout(10):
            while sum(r.status.active for r in relays) != 1:
                await asyncio.sleep(0.05)
        ids = await make_backlog(clean_db, 300)
        await consumer.wait_for(300, set(ids))
        assert sum(r.status.active for r in relays) == 1
        assert all(r.status.broker is BrokerState.OK for r in relays)
        leader = next(r for r in relays if r.status.active)
        follower = next(r for r in relays if not r.status.active)
        leader.stop()
        await tasks[relays.index(leader)]
        more = await make_backlog(clean_db, 50, prefix="m")
        await consumer.wait_for(50, set(more), timeout=15)
        assert follower.status.active
    finally:
        for r in relays:
            r.stop()
        await asyncio.gather(*tasks)
    envelopes = consumer.envelopes(set(ids) | set(more))
    assert len({e["id"] for e in envelopes}) == 350
    positions = await outbox_ids(clean_db)
    seen = [e["id"] for e in envelopes]
    assert seen == sorted(seen, key=positions.index)  # one publisher at a time: commit order kept


async def test_published_rows_are_purged_after_the_retention_period(
    clean_db: Database, database_url: str, broker_url: str, consumer: Consumer
) -> None:
    """And expired idempotency keys in the same step; live ones stay."""
    async with clean_db.connection() as conn:
        await conn.execute(
            "INSERT INTO idempotency_keys (key, fingerprint, answer, expires_at) "
            "SELECT 'k' || i, '\\x00', '{}', clock_timestamp() + i * interval '1 hour' "
            "FROM generate_series(-12000, 1) AS i"
        )
    ids = await make_backlog(clean_db, 20)
    settings = RelaySettings(
        database_url=database_url,
        broker_url=broker_url,
        poll_interval=0.1,
        retention_seconds=0.5,
        purge_interval=0.2,
    )
    relay = OutboxRelay(settings)
    task = asyncio.create_task(relay.run())
    try:
        await consumer.wait_for(20, set(ids))
        unpublished = await make_backlog(
            clean_db, 5, prefix="m"
        )  # written now: kept until published and aged
        async with asyncio.timeout(10):
            while await outbox_ids(clean_db, published=True):
                await asyncio.sleep(0.1)
        await consumer.wait_for(5, set(unpublished))
        await outbox_drained(clean_db)  # delivered, then confirmed and marked
    finally:
        relay.stop()
        await task
    assert await outbox_ids(clean_db, published=False) == []
    async with clean_db.connection() as conn:
        assert [r["key"] for r in await conn.fetch("SELECT key FROM idempotency_keys")] == ["k1"]


EXPIRED_ROWS = 60_000
PURGE_WITHIN_S = 40


async def test_the_purge_keeps_up_with_a_large_expired_backlog(
    clean_db: Database, database_url: str, broker_url: str
) -> None:
    async with clean_db.connection() as conn:
        await conn.execute(
            "INSERT INTO outbox (id, type, aggregate_id, payload, published_at) "
            "SELECT gen_random_uuid(), 'user.created', gen_random_uuid(), '{}'::jsonb, "
            "now() - interval '2 days' FROM generate_series(1, $1)",
            EXPIRED_ROWS,
        )
        fresh = await conn.fetchval(
            "INSERT INTO outbox (id, type, aggregate_id, payload, published_at) "
            "VALUES (gen_random_uuid(), 'user.created', gen_random_uuid(), '{}'::jsonb, now()) RETURNING id"
        )
    relay = OutboxRelay(relay_settings(database_url, broker_url))  # the default 24 h retention
    task = asyncio.create_task(relay.run())
    started = asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout(PURGE_WITHIN_S):
            while len(await outbox_ids(clean_db, published=True)) > 1:
                await asyncio.sleep(0.2)
        took = asyncio.get_running_loop().time() - started
    finally:
        relay.stop()
        await task
    print(f"[purge] {EXPIRED_ROWS} expired rows deleted in {took:.1f} s")
    assert await outbox_ids(clean_db, published=True) == [str(fresh)]  # within the retention: kept
