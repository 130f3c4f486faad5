"""The connection pool: asyncpg directly, since every request's cost is mostly here.

SQLAlchemy describes the schema and runs the migrations; the hot path speaks SQL to asyncpg.
Driver failures that mean "the database cannot do this now" become `StorageUnavailable` (503), never a
500, with their cause: no connection free in time, a statement past its time, or the database unreachable
(then the idle connections that died with the server are dropped at once).
"""

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import NamedTuple

import asyncpg
import structlog

from user_service.application.errors import StorageCause, StorageUnavailable

log = structlog.get_logger(__name__)

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
    # A connection left mid-operation by a server that went away ("cannot switch to state …").
    asyncpg.exceptions.InternalClientError,
)


def asyncpg_dsn(url: str) -> str:
    """asyncpg speaks `postgresql://`; SQLAlchemy-style `postgresql+asyncpg://` is accepted too."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _keep_session(_: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (a round trip per request): the pool's connections never
    change session state — no SET, LISTEN or advisory lock; an open transaction is still rolled back."""


class Turns:
    """Turns handed out first come, first served: a released turn goes straight to the longest waiter
    (asyncio's Semaphore scans its waiters on every acquire to be fair; this hands over in O(1))."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def take(self) -> None:
        if self._free and not self._waiters:
            self._free -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.cancelled():
                with contextlib.suppress(ValueError):
                    self._waiters.remove(turn)
            else:  # handed over as the wait was cancelled: the next one takes it
                self.give()
            raise

    def give(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


class PoolState(NamedTuple):
    used: int
    idle: int
    max: int
    waiting: int  # requests waiting for a connection

    @property
    def saturated(self) -> bool:
        return self.used >= self.max


@dataclass(frozen=True, slots=True)
class PoolSettings:
    dsn: str
    min_size: int = 2
    max_size: int = 10
    acquire_timeout: float = 1.5
    connect_timeout: float = 1.0
    statement_timeout: float = 5.0
    connection_class: type[asyncpg.Connection] = asyncpg.Connection
    # asyncpg's prepared-statement cache; None: asyncpg's default. 0 behind a transaction-mode pooler
    # that does not track prepared statements (PgBouncer < 1.21): every statement is then unnamed.
    statement_cache_size: int | None = None
    application_name: str = "user-service"


class Database:
    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._waiting = 0
        # Turns at the pool, taken first come, first served (see `connection`).
        self._turns = Turns(settings.max_size)
        self._probe: asyncpg.Connection | None = None
        self._probe_lock = asyncio.Lock()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the database pool is not open")
        return self._pool

    async def open(self) -> None:
        s = self.settings
        cache_size = 100 if s.statement_cache_size is None else s.statement_cache_size  # 100: asyncpg's
        # min_size=0: the service starts, and reports itself not ready, while the database is down.
        self._pool = await asyncpg.create_pool(
            asyncpg_dsn(s.dsn),
            min_size=0,
            max_size=s.max_size,
            timeout=s.connect_timeout,
            command_timeout=s.statement_timeout,
            server_settings={"application_name": s.application_name},
            reset=_keep_session,
            connection_class=s.connection_class,
            statement_cache_size=cache_size,
        )
        await self.warm_up()

    async def warm_up(self) -> None:
        """Open `min_size` connections now, so the first requests do not pay for connecting."""
        conns: list[asyncpg.pool.PoolConnectionProxy] = []
        try:
            for _ in range(self.settings.min_size):
                conns.append(await self.pool.acquire(timeout=self.settings.acquire_timeout))  # noqa: PERF401
        except UNAVAILABLE_ERRORS as exc:
            log.warning("database unavailable at start", error=type(exc).__name__)
        finally:
            for conn in conns:
                await self.pool.release(conn)

    async def close(self) -> None:
        await self._close_probe()
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=5)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        """A connection of the pool for the block, within DB_POOL_TIMEOUT, in the order asked for.

        asyncpg's pool hands a released connection to whoever asks next, not to whoever has waited
        longest: a request woken for a connection finds it taken by one that just arrived and queues
        again, so under load a few requests wait the whole timeout (measured: a 503 after 1.5 s among
        2,000 answers a second of a few ms each). A turn is taken first (`Turns`, as many as the pool's
        size), and only a request with a turn asks the pool, which then always has a connection for it.
        One deadline covers both waits, without a task of its own (asyncpg's timeout makes one).
        """
        pool = self.pool
        turn = False
        self._waiting += 1
        try:
            async with asyncio.timeout(self.settings.acquire_timeout):
                await self._turns.take()
                turn = True
                conn = await pool.acquire()
        except BaseException as exc:
            if turn:
                self._turns.give()
            if isinstance(exc, UNAVAILABLE_ERRORS):  # a timeout included, in either wait
                raise await self._acquire_failed(exc) from exc
            raise
        finally:
            self._waiting -= 1
        try:
            yield conn
        except (TimeoutError, asyncpg.QueryCanceledError) as exc:
            # asyncpg's command timeout (it cancels the statement) or the server's statement_timeout.
            raise StorageUnavailable("a statement ran past its time", StorageCause.STATEMENT_TIMEOUT) from exc
        except UNAVAILABLE_ERRORS as exc:
            raise await self._unreachable(exc) from exc
        finally:
            try:
                # Releasing may close a connection that died with its server, and fail: the pool has let
                # go of it already, and what the block did (or the error it raised) is the answer.
                with contextlib.suppress(*UNAVAILABLE_ERRORS):
                    await pool.release(conn)
            finally:
                self._turns.give()

    async def _acquire_failed(self, exc: BaseException) -> StorageUnavailable:
        if isinstance(exc, TimeoutError) and self.pool.get_size() >= self.settings.max_size:
            return StorageUnavailable("no database connection was free in time", StorageCause.POOL_TIMEOUT)
        # A timeout with room in the pool was spent opening a connection: the database did not answer.
        return await self._unreachable(exc)

    async def _unreachable(self, exc: BaseException) -> StorageUnavailable:
        if self._pool is not None:
            # The server went away: every idle connection is as dead as this one.
            await self._pool.expire_connections()
        return StorageUnavailable(f"the database is unreachable ({type(exc).__name__})")

    def pool_state(self) -> PoolState:
        """The pool's connections now, for readiness and the pool metrics."""
        if self._pool is None:
            return PoolState(0, 0, self.settings.max_size, 0)
        size, idle = self._pool.get_size(), self._pool.get_idle_size()
        return PoolState(size - idle, idle, self.settings.max_size, self._waiting)

    async def reachable(self) -> bool:
        """Whether the database answers, asked on the side connection (not the pool's).

        Readiness asks this: a pool whose connections are all busy serving requests is saturated, not
        down, and must not take the instance out of its load balancer.
        """
        try:
            await self.on_side_connection("SELECT 1")
        except StorageUnavailable:
            return False
        return True

    async def on_side_connection(self, query: str) -> asyncpg.Record | None:
        """One row of `query`, on a connection of its own beside the pool, for probes and scrapes: they
        neither wait behind requests for a connection nor take one from them. A side connection that
        died with a restarted server is replaced once before giving up."""
        async with self._probe_lock:
            failure: BaseException | None = None
            for _ in range(2):
                try:
                    if self._probe is None or self._probe.is_closed():
                        self._probe = await asyncpg.connect(
                            asyncpg_dsn(self.settings.dsn),
                            timeout=self.settings.connect_timeout,
                            statement_cache_size=0,
                            server_settings={"application_name": f"{self.settings.application_name} probe"},
                        )
                    return await self._probe.fetchrow(query, timeout=self.settings.acquire_timeout)
                except UNAVAILABLE_ERRORS as exc:
                    failure = exc
                    await self._close_probe()
            raise StorageUnavailable(f"the database is unreachable ({type(failure).__name__})")

    async def _close_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.terminate()
