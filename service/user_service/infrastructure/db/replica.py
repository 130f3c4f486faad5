"""Where a read goes: a streaming replica (DATABASE_READ_URL) within a bound of staleness, else the primary.

**Staleness bound** (`max_staleness`, 1 s). A monitor samples the primary's WAL position every `interval`
(0.2 s), noting when it sent the query, then asks the replica how far it has replayed. When the replica
has replayed past the sample taken at time t, it holds every write acknowledged before t (a commit is
acknowledged only once its WAL is written, so its position is at most the sample's). A plain read is
routed to the replica only while `now - t <= max_staleness` for the latest such t: the bound is checked
at routing time, on every read, so a replica that stops replaying, or a monitor that cannot reach it,
loses its reads once the bound has passed, without waiting for anything.

**Read-your-writes.** Every acknowledged write hands the client the primary's WAL position after its
commit (`X-Consistency-Token`, see presentation). A read that carries one goes to the replica only once
the replica has replayed past it: known from the monitor, else asked on the replica connection the read
then uses, re-asked for up to `catch_up_wait` (50 ms), then the read goes to the primary. A token is a
position on the primary, so it means the same to every instance behind the load balancer.

**Fallback.** A replica that is down, lagging past the bound, or not a replica at all (not in recovery)
serves no read; a read whose replica connection fails is run again on the primary. The state is in
readiness, in `db_replica_serving` and `db_client_reads_total`, and in one log line when reads fall back
and one when they return, however many states the replica passes through in between.
"""

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import asyncpg
import structlog

from user_service.application.errors import StorageCause, StorageUnavailable
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.telemetry import metrics

log = structlog.get_logger(__name__)
T = TypeVar("T")
Connection = asyncpg.pool.PoolConnectionProxy

_PRIMARY_POSITION = "SELECT pg_current_wal_lsn()::text"
_REPLICA_POSITION = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text"
_REPLAYED = "SELECT pg_last_wal_replay_lsn()::text"


def parse_lsn(text: str) -> int:
    """A WAL position (`16/B374D848`) as a number."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


# The position a request's reads must see (the client's token), set by presentation around a read.
read_after: ContextVar[int | None] = ContextVar("read_after", default=None)
# The primary's position after the request's last commit, for the client's next reads.
committed_at: ContextVar[int | None] = ContextVar("committed_at", default=None)


class ReplicaState(StrEnum):
    OK = "ok"  # plain reads go to the replica
    LAGGING = "lagging"  # replayed too little for the staleness bound
    DOWN = "down"  # unreachable, or not a replica
    DISABLED = "disabled"  # no DATABASE_READ_URL


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    max_staleness: float = 1.0
    interval: float = 0.2
    catch_up_wait: float = 0.05
    catch_up_poll: float = 0.005


class ReadRouting:
    """The read side's databases: the primary, and the replica when one is configured."""

    def __init__(
        self, primary: Database, replica: Database | None, settings: ReplicaSettings | None = None
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.settings = settings or ReplicaSettings()
        self.state = ReplicaState.DOWN if replica is not None else ReplicaState.DISABLED
        self.reason = "not checked yet" if replica is not None else ""
        self._checked = False  # the first check tells its state whatever it is
        self.replayed = 0  # how far the replica has replayed, as last seen
        self._fresh_as_of = float("-inf")  # the replica holds every write acknowledged before this
        self._samples: deque[tuple[float, int]] = deque(maxlen=64)  # (sent at, primary's position)
        self._task: asyncio.Task[None] | None = None
        metrics.DB_REPLICA_SERVING.set(0)

    @property
    def staleness(self) -> float | None:
        """Seconds of writes the replica may be missing now (None: no bound is known)."""
        if self._fresh_as_of == float("-inf"):
            return None
        return time.monotonic() - self._fresh_as_of

    async def start(self) -> None:
        if self.replica is not None:
            await self.replica.open()
            await self.check()
            self._task = asyncio.create_task(self._monitor(), name="replica-monitor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.replica is not None:
            await self.replica.close()

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval)
            try:
                await self.check()
            except Exception:  # the monitor outlives every failure; reads fall back meanwhile
                log.exception("replica check failed")

    async def check(self) -> None:
        """One sample of the primary's position, then the replica's; the state follows."""
        assert self.replica is not None
        sent = time.monotonic()
        with contextlib.suppress(StorageUnavailable):
            row = await self.primary.on_side_connection(_PRIMARY_POSITION)
            if row is not None and row[0] is not None:
                self._samples.append((sent, parse_lsn(row[0])))
        try:
            row = await self.replica.on_side_connection(_REPLICA_POSITION)
        except StorageUnavailable:
            self._set(ReplicaState.DOWN, "unreachable")
            return
        if row is None or not row[0] or row[1] is None:
            self._set(ReplicaState.DOWN, "not a replica (not in recovery)")
            return
        self._replayed_to(parse_lsn(row[1]))
        self._settle()
        metrics.DB_REPLICA_STALENESS.set(self.staleness or 0.0)

    def _replayed_to(self, position: int) -> None:
        self.replayed = max(self.replayed, position)
        for sent, primary_position in reversed(self._samples):
            if primary_position <= self.replayed:
                self._fresh_as_of = max(self._fresh_as_of, sent)
                break

    def _fresh(self) -> bool:
        return time.monotonic() - self._fresh_as_of <= self.settings.max_staleness

    def _settle(self) -> None:
        if self._fresh():
            self._set(ReplicaState.OK, "")
        else:
            self._lagging()

    def _lagging(self) -> None:
        self._set(ReplicaState.LAGGING, f"more than {self.settings.max_staleness:g} s of writes not replayed")

    def _set(self, state: ReplicaState, reason: str) -> None:
        checked, self._checked = self._checked, True
        if state is self.state and checked:
            return
        previous, self.state, self.reason = self.state, state, reason
        if state is ReplicaState.DOWN:
            # What comes back may be another server (a replica rebuilt, a failover): known afresh.
            self.replayed, self._fresh_as_of = 0, float("-inf")
        metrics.DB_REPLICA_SERVING.set(1 if state is ReplicaState.OK else 0)
        # The fallback and the return get one line each; a change between the states that serve no
        # read (lagging, then down as the server stops) is the same fallback, told at info.
        if state is ReplicaState.OK:
            log.info("reads on the replica", previous=previous.value)
        elif previous is ReplicaState.OK or not checked:
            log.warning("reads fall back to the primary", replica=state.value, reason=reason)
        else:
            log.info("replica still serves no read", replica=state.value, reason=reason,
                     previous=previous.value)  # fmt: skip

    async def run(self, read: Callable[[Connection], Awaitable[T]]) -> T:
        """`read` on the replica when it may serve it (bound and token), else on the primary."""
        if self.replica is None:
            metrics.READS_PRIMARY_ONLY.inc()
        elif self.state is ReplicaState.OK and self._fresh():
            with contextlib.suppress(_NotCaughtUp):
                return await self._on_replica(read)
        elif self.state is ReplicaState.DOWN:
            metrics.READS_PRIMARY_DOWN.inc()
        else:
            self._lagging()
            metrics.READS_PRIMARY_LAGGING.inc()
        async with self.primary.connection() as conn:
            return await read(conn)

    async def _on_replica(self, read: Callable[[Connection], Awaitable[T]]) -> T:
        assert self.replica is not None
        token = read_after.get()
        try:
            async with self.replica.connection() as conn:
                if token is not None and token > self.replayed and not await self._catch_up(conn, token):
                    metrics.READS_PRIMARY_CATCHING_UP.inc()
                    raise _NotCaughtUp
                result = await read(conn)
        except StorageUnavailable as exc:
            if exc.cause is StorageCause.UNREACHABLE:
                self._set(ReplicaState.DOWN, "unreachable")
            metrics.READS_PRIMARY_DOWN.inc()
            raise _NotCaughtUp from exc
        except asyncpg.TransactionRollbackError as exc:  # canceled by a conflict with recovery
            metrics.READS_PRIMARY_DOWN.inc()
            raise _NotCaughtUp from exc
        metrics.READS_REPLICA.inc()
        return result

    async def _catch_up(self, conn: Connection, token: int) -> bool:
        """Whether the replica replays past `token` within `catch_up_wait`, asked on `conn`."""
        deadline = time.monotonic() + self.settings.catch_up_wait
        while True:
            replayed = await conn.fetchval(_REPLAYED)
            if replayed is not None:
                self._replayed_to(parse_lsn(replayed))
            if self.replayed >= token:
                return True
            if time.monotonic() + self.settings.catch_up_poll > deadline:
                return False
            await asyncio.sleep(self.settings.catch_up_poll)

    def describe(self) -> dict[str, object]:
        """The replica's state for readiness."""
        staleness = self.staleness
        return {
            "state": self.state.value,
            "reason": self.reason or None,
            "staleness_seconds": None if staleness is None else round(staleness, 3),
            "replayed": format_lsn(self.replayed) if self.replayed else None,
        }


class _NotCaughtUp(Exception):
    """The replica cannot serve this read; the primary will."""


@contextmanager
def reading_after(token: int | None) -> Iterator[None]:
    """Reads inside see every write up to `token` (a client's `X-Consistency-Token`)."""
    reset = read_after.set(token)
    try:
        yield
    finally:
        read_after.reset(reset)
