"""Outbox benchmark: commit-to-confirm latency at a steady write rate, and relay throughput on a backlog.

    uv run python loadtest/outbox_bench.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
                                           [--broker amqp://guest:guest@127.0.0.1:5672/] [--rate 200]
                                           [--seconds 15] [--backlog 10000] [--events-per-user 4]

Creates a fresh database on the given server, migrates it, and runs the service's own unit of work and
relay in this process against the real broker (a queue bound to the `users` exchange drains the messages).
1. Steady rate: users are created one per transaction at --rate per second for --seconds while the relay
   runs; each event's commit-to-confirm time is `published_at - created_at` of its outbox row (the row is
   written in the committing transaction, and marked only after the broker confirmed it).
2. Backlog: --backlog events are committed with the relay stopped; the relay then starts and the time
   until the last one is confirmed gives its throughput.
3. The same with --events-per-user events of each user in a row: a user's next event is published only
   once the previous one is confirmed, so this is the relay's slowest shape.
Prints a markdown table; the database is dropped at the end.
"""

import argparse
import asyncio
import contextlib
import time
import uuid

import aio_pika

from scratch_db import create_database, drop_database
from user_service.domain.user import User
from user_service.domain.values import FullName, Username
from user_service.infrastructure.db import migrations
from user_service.infrastructure.db.database import Database, PoolSettings
from user_service.infrastructure.db.unit_of_work import PostgresUnitOfWork
from user_service.infrastructure.outbox.relay import EXCHANGE, OutboxRelay, RelaySettings


async def create_user(db: Database, i: int, tag: str) -> None:
    user = User.register(uuid.uuid4(), Username(f"o{tag}_{i}"), FullName.of("Out", "Box"))
    async with PostgresUnitOfWork(db) as uow:
        uow.users.add(user)
        await uow.commit()


async def pending(db: Database) -> int:
    async with db.connection() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))


async def drain(broker: str) -> tuple[aio_pika.abc.AbstractConnection, list[int]]:
    connection = await aio_pika.connect(broker)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="user.#")
    received = [0]

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        received[0] += 1
        await message.ack()

    await queue.consume(on_message)
    return connection, received


async def drain_backlog(db: Database, settings: RelaySettings) -> float:
    """Seconds the relay takes, from its start, to publish every pending event."""
    relay = OutboxRelay(settings)
    started = time.perf_counter()
    task = asyncio.create_task(relay.run())
    while await pending(db):
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    relay.stop()
    await task
    return elapsed


async def run(args: argparse.Namespace) -> None:
    name = f"outbox_bench_{uuid.uuid4().hex[:8]}"
    url = await create_database(args.dsn, name)
    try:
        await asyncio.to_thread(migrations.upgrade, url)
        db = Database(PoolSettings(dsn=url, min_size=4, max_size=10))
        await db.open()
        consumer, received = await drain(args.broker)
        settings = RelaySettings(database_url=url, broker_url=args.broker)

        # 1. Steady rate, relay running.
        relay = OutboxRelay(settings)
        task = asyncio.create_task(relay.run())
        await asyncio.sleep(1)
        interval, count = 1 / args.rate, int(args.rate * args.seconds)
        start = time.perf_counter()
        writes = []
        for i in range(count):
            writes.append(asyncio.create_task(create_user(db, i, "s")))
            await asyncio.sleep(max(0.0, start + (i + 1) * interval - time.perf_counter()))
        await asyncio.gather(*writes)
        while await pending(db):
            await asyncio.sleep(0.05)
        async with db.connection() as conn:
            p50, p99, mx = await conn.fetchrow(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP "
                "(ORDER BY lag), max(lag) FROM (SELECT extract(epoch FROM published_at - created_at) * 1000 "
                "AS lag FROM outbox) l"
            )
        relay.stop()
        await task

        # 2. Backlog, then the relay alone.
        async with db.connection() as conn:
            await conn.execute("DELETE FROM outbox")
        for batch in range(0, args.backlog, 500):
            users = [
                User.register(uuid.uuid4(), Username(f"b{i}"), FullName.of("Back", "Log"))
                for i in range(batch, min(batch + 500, args.backlog))
            ]
            async with PostgresUnitOfWork(db) as uow:
                for user in users:
                    uow.users.add(user)
                await uow.commit()
        elapsed = await drain_backlog(db, settings)

        # 3. Backlog of users with several events each, in a row (a user's next event waits for the
        #    confirm of the previous one, so this is the relay's slowest case).
        async with db.connection() as conn:
            await conn.execute("DELETE FROM outbox")
            await conn.execute(
                "INSERT INTO outbox (id, type, aggregate_id, payload) "
                "SELECT gen_random_uuid(), 'user.username_changed', u.id, '{}'::jsonb "
                "FROM (SELECT gen_random_uuid() AS id, g FROM generate_series(1, $1) g) u, "
                "generate_series(1, $2) e ORDER BY u.g, e",
                args.backlog // args.events_per_user,
                args.events_per_user,
            )
        elapsed_in_a_row = await drain_backlog(db, settings)
        await consumer.close()
        await db.close()
        print(f"| steady rate | {args.rate}/s for {args.seconds} s ({count} events) |")
        print(f"| commit-to-confirm p50 | {p50:.1f} ms |")
        print(f"| commit-to-confirm p99 | {p99:.1f} ms |")
        print(f"| commit-to-confirm max | {mx:.1f} ms |")
        print(
            f"| backlog | {args.backlog} events in {elapsed:.2f} s: {args.backlog / elapsed:.0f} events/s |"
        )
        in_a_row = args.backlog // args.events_per_user * args.events_per_user
        print(
            f"| backlog, {args.events_per_user} events per user in a row | {in_a_row} events in "
            f"{elapsed_in_a_row:.2f} s: {in_a_row / elapsed_in_a_row:.0f} events/s |"
        )
        print(f"| messages received | {received[0]} |")
    finally:
        with contextlib.suppress(Exception):
            await drop_database(args.dsn, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--backlog", type=int, default=10000)
    parser.add_argument("--events-per-user", type=int, default=4, help="in the backlog of users' changes")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
