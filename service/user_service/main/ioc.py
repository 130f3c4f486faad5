"""Dependency wiring: one line per use case. Tests swap providers to use fakes or other databases."""

from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
from dishka import Provider, Scope, from_context, provide

from user_service.application.commands.change_full_name import ChangeFullNameHandler
from user_service.application.commands.change_username import ChangeUsernameHandler
from user_service.application.commands.create_user import CreateUserHandler
from user_service.application.commands.delete_user import DeleteUserHandler
from user_service.application.ports import UnitOfWork, UserReader
from user_service.application.queries.get_user import GetUserHandler
from user_service.application.queries.get_user_by_username import GetUserByUsernameHandler
from user_service.application.queries.list_users import ListUsersHandler
from user_service.infrastructure.db.database import Database, PoolSettings
from user_service.infrastructure.db.reader import PostgresUserReader
from user_service.infrastructure.db.replica import ReadRouting
from user_service.infrastructure.db.unit_of_work import PostgresUnitOfWork
from user_service.infrastructure.outbox.status import RelayStatus
from user_service.infrastructure.telemetry.metrics import count_committed
from user_service.infrastructure.telemetry.sql import ReplicaTracedConnection, TracedConnection
from user_service.infrastructure.telemetry.tracing import current_traceparent
from user_service.main.settings import Settings


def pool_settings(settings: Settings, dsn: str, traced: type[asyncpg.Connection]) -> PoolSettings:
    return PoolSettings(
        dsn=dsn,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        acquire_timeout=settings.db_pool_timeout,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout,
        connection_class=traced if settings.telemetry_enabled else asyncpg.Connection,
        statement_cache_size=settings.db_statement_cache_size,
    )


class InfrastructureProvider(Provider):
    settings = from_context(Settings, scope=Scope.APP)
    relay_status = from_context(RelayStatus, scope=Scope.APP)

    @provide(scope=Scope.APP)
    async def database(self, settings: Settings) -> AsyncIterator[Database]:
        assert settings.database_url is not None, "DATABASE_URL is set by the CLI or the caller"
        db = Database(pool_settings(settings, settings.database_url, TracedConnection))
        await db.open()
        yield db
        await db.close()

    @provide(scope=Scope.APP)
    async def read_routing(self, db: Database, settings: Settings) -> AsyncIterator[ReadRouting]:
        """The read side: the replica of DATABASE_READ_URL when set, the primary otherwise."""
        replica = None
        if settings.database_read_url is not None:
            replica = Database(
                replace(
                    pool_settings(settings, settings.database_read_url, ReplicaTracedConnection),
                    application_name="user-service replica",
                )
            )
        routing = ReadRouting(db, replica)
        await routing.start()
        yield routing
        await routing.close()

    @provide(scope=Scope.REQUEST)
    def unit_of_work(self, db: Database, settings: Settings) -> UnitOfWork:
        # The consistency token is needed only where reads may be served by a replica.
        track = settings.database_read_url is not None
        lifetime = settings.idempotency_key_hours * 3600
        if settings.telemetry_enabled:
            return PostgresUnitOfWork(
                db,
                on_commit=count_committed,
                traceparent=current_traceparent,
                track_position=track,
                idempotency_key_lifetime=lifetime,
            )
        return PostgresUnitOfWork(db, track_position=track, idempotency_key_lifetime=lifetime)

    @provide(scope=Scope.APP)
    def reader(self, routing: ReadRouting, settings: Settings) -> UserReader:
        return PostgresUserReader(routing, settings.db_list_concurrency)


class UseCasesProvider(Provider):
    create_user = provide(CreateUserHandler, scope=Scope.REQUEST)
    change_username = provide(ChangeUsernameHandler, scope=Scope.REQUEST)
    change_full_name = provide(ChangeFullNameHandler, scope=Scope.REQUEST)
    delete_user = provide(DeleteUserHandler, scope=Scope.REQUEST)
    get_user = provide(GetUserHandler, scope=Scope.APP)
    get_user_by_username = provide(GetUserByUsernameHandler, scope=Scope.APP)
    list_users = provide(ListUsersHandler, scope=Scope.APP)


def providers() -> list[Provider]:
    return [InfrastructureProvider(), UseCasesProvider()]
