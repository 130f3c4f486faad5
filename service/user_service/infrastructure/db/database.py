"""The connection pool: asyncpg directly, since every request's cost is mostly here.

SQLAlchemy describes the schema and runs the migrations; the hot path speaks SQL to asyncpg.
Driver failures that mean "the database is not there right now" become `StorageUnavailable` (503),
never a 500, and the idle connections that died with the server are dropped at once.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import structlog

from user_service.application.errors import StorageUnavailable

log = structlog.get_logger(__name__)

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
)


def asyncpg_dsn(url: str) -> str:
    """asyncpg speaks `postgresql://`; SQLAlchemy-style `postgresql+asyncpg://` is accepted too."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _keep_session(_: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (a round trip per request): the pool's connections never
    change session state — no SET, LISTEN or advisory lock; an open transaction is still rolled back."""


@dataclass(frozen=True, slots=True)
class PoolSettings:
    dsn: str
    min_size: int = 2
    max_size: int = 10
    acquire_timeout: float = 1.5
    connect_timeout: float = 1.0
    statement_timeout: float = 5.0
    connection_class: type[asyncpg.Connection] = asyncpg.Connection


class Database:
    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the database pool is not open")
        return self._pool

    async def open(self) -> None:
        s = self.settings
        # min_size=0: the service starts, and reports itself not ready, while the database is down.
        self._pool = await asyncpg.create_pool(
            asyncpg_dsn(s.dsn),
            min_size=0,
            max_size=s.max_size,
            timeout=s.connect_timeout,
            command_timeout=s.statement_timeout,
            server_settings={"application_name": "user-service"},
            reset=_keep_session,
            connection_class=s.connection_class,
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
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=5)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        pool = self.pool
        try:
            conn = await pool.acquire(timeout=self.settings.acquire_timeout)
        except UNAVAILABLE_ERRORS as exc:
            raise await self._unavailable(exc) from exc
        try:
            yield conn
        except UNAVAILABLE_ERRORS as exc:
            raise await self._unavailable(exc) from exc
        finally:
            await pool.release(conn)

    async def _unavailable(self, exc: BaseException) -> StorageUnavailable:
        if isinstance(exc, TimeoutError):
            return StorageUnavailable("no database connection was free in time", busy=True)
        if self._pool is not None:
            # The server went away: every idle connection is as dead as this one.
            await self._pool.expire_connections()
        return StorageUnavailable(f"the database is unreachable ({type(exc).__name__})")

    def connection_counts(self) -> tuple[int, int]:
        """(used, idle) connections of the pool, for the pool metrics."""
        if self._pool is None:
            return 0, 0
        size, idle = self._pool.get_size(), self._pool.get_idle_size()
        return size - idle, idle

    async def ping(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.fetchval("SELECT 1")
        except StorageUnavailable:
            return False
        return True
