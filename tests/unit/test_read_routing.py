"""Where reads go: the replica within the staleness bound and past the client's token, else the primary."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from structlog.testing import capture_logs

from user_service.application.errors import StorageUnavailable
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.replica import (
    ReadRouting,
    ReplicaSettings,
    ReplicaState,
    format_lsn,
    parse_lsn,
    reading_after,
)


class Server:
    """A fake primary or replica: its WAL position, and which connection served what."""

    def __init__(self, name: str, position: int, replica: bool = False) -> None:
        self.name, self.position, self.replica = name, position, replica
        self.down = False
        self.reads = 0

    async def on_side_connection(self, query: str) -> tuple[Any, ...]:
        if self.down:
            raise StorageUnavailable("down")
        return (True, format_lsn(self.position)) if self.replica else (format_lsn(self.position),)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator["Server"]:
        if self.down:
            raise StorageUnavailable("down")
        yield self

    async def fetchval(self, query: str) -> str:
        return format_lsn(self.position)

    async def open(self) -> None: ...

    async def close(self) -> None: ...


async def served_by(routing: ReadRouting) -> str:
    async def read(conn: Any) -> str:
        conn.reads += 1
        return str(conn.name)

    return await routing.run(read)


def routing(primary: Server, replica: Server, **settings: float) -> ReadRouting:
    return ReadRouting(cast(Database, primary), cast(Database, replica), ReplicaSettings(**settings))


def test_positions_read_and_written_as_postgresql_spells_them() -> None:
    for text in ("0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"):
        assert format_lsn(parse_lsn(text)) == text
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")


async def test_a_replica_that_caught_up_serves_plain_reads() -> None:
    primary, replica = Server("primary", 100), Server("replica", 100, replica=True)
    reads = routing(primary, replica)
    await reads.check()
    assert reads.state is ReplicaState.OK
    assert await served_by(reads) == "replica"


async def test_past_the_bound_without_a_newer_check_reads_go_to_the_primary() -> None:
    primary, replica = Server("primary", 100), Server("replica", 100, replica=True)
    reads = routing(primary, replica, max_staleness=0.05)
    await reads.check()
    assert await served_by(reads) == "replica"
    time.sleep(0.06)  # no check since: the bound is enforced at routing time
    assert await served_by(reads) == "primary"
    assert reads.state is ReplicaState.LAGGING


async def test_a_replica_that_replays_nothing_new_loses_its_reads_after_the_bound() -> None:
    primary, replica = Server("primary", 100), Server("replica", 100, replica=True)
    reads = routing(primary, replica, max_staleness=0.05)
    await reads.check()
    primary.position = 200  # writes the replica does not replay
    for _ in range(4):
        time.sleep(0.02)
        await reads.check()
    assert reads.state is ReplicaState.LAGGING
    assert await served_by(reads) == "primary"
    replica.position = 200
    await reads.check()
    assert reads.state is ReplicaState.OK


async def test_a_token_past_the_replica_waits_briefly_then_the_primary_serves() -> None:
    primary, replica = Server("primary", 300), Server("replica", 300, replica=True)
    reads = routing(primary, replica, catch_up_wait=0.02)
    await reads.check()
    with reading_after(300):
        assert await served_by(reads) == "replica"
    with reading_after(301):  # a write the replica has not replayed
        started = time.monotonic()
        assert await served_by(reads) == "primary"
        assert time.monotonic() - started < 0.2
    replica.position = 301
    with reading_after(301):
        assert await served_by(reads) == "replica"


async def test_a_replica_that_fails_is_down_and_the_read_is_served_by_the_primary() -> None:
    primary, replica = Server("primary", 100), Server("replica", 100, replica=True)
    reads = routing(primary, replica)
    await reads.check()
    replica.down = True
    assert await served_by(reads) == "primary"
    assert reads.state is ReplicaState.DOWN
    await reads.check()
    assert reads.state is ReplicaState.DOWN
    replica.down = False
    await reads.check()
    assert reads.state is ReplicaState.OK
    assert await served_by(reads) == "replica"


async def test_a_server_that_is_not_in_recovery_is_no_replica() -> None:
    primary, other = Server("primary", 100), Server("other", 100)
    reads = routing(primary, other)
    other.replica = False

    async def not_in_recovery(query: str) -> tuple[Any, ...]:
        return (False, None)

    other.on_side_connection = not_in_recovery  # type: ignore[method-assign]
    await reads.check()
    assert reads.state is ReplicaState.DOWN
    assert await served_by(reads) == "primary"


async def test_without_a_replica_every_read_is_the_primarys() -> None:
    primary = Server("primary", 100)
    reads = ReadRouting(cast(Database, primary), None)
    assert reads.state is ReplicaState.DISABLED
    with reading_after(500):
        assert await served_by(reads) == "primary"


async def test_one_line_when_reads_fall_back_and_one_when_they_return() -> None:
    primary, replica = Server("primary", 100), Server("replica", 100, replica=True)
    reads = routing(primary, replica, max_staleness=0.05)
    with capture_logs() as logs:
        await reads.check()
        time.sleep(0.06)  # past the bound: lagging
        assert await served_by(reads) == "primary"
        replica.down = True  # then the server stops: down, the same fallback
        await reads.check()
        assert await served_by(reads) == "primary"
        await reads.check()
        replica.down = False
        await reads.check()
    assert reads.state is ReplicaState.OK
    assert [line["event"] for line in logs] == [
        "reads on the replica",
        "reads fall back to the primary",
        "replica still serves no read",
        "reads on the replica",
    ]
    assert [line["log_level"] for line in logs] == ["info", "warning", "info", "info"]
    assert logs[2]["replica"] == "down"
    assert logs[2]["previous"] == "lagging"


async def test_a_replica_down_at_the_first_check_is_told_once() -> None:
    primary, replica = Server("primary", 100), Server("replica", 100, replica=True)
    replica.down = True
    reads = routing(primary, replica)
    with capture_logs() as logs:
        await reads.check()
        await reads.check()
    assert [line["event"] for line in logs] == ["reads fall back to the primary"]
    assert logs[0]["reason"] == "unreachable"
