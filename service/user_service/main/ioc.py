"""Dependency wiring: one line per use case. Tests swap providers to use fakes or other databases."""

from collections.abc import AsyncIterator

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
from user_service.infrastructure.db.unit_of_work import PostgresUnitOfWork
from user_service.infrastructure.outbox.status import RelayStatus
from user_service.infrastructure.telemetry.metrics import count_committed
from user_service.infrastructure.telemetry.sql import TracedConnection
from user_service.infrastructure.telemetry.tracing import current_traceparent
from user_service.main.settings import Settings


class InfrastructureProvider(Provider):
    settings = from_context(Settings, scope=Scope.APP)
    relay_status = from_context(RelayStatus, scope=Scope.APP)

    @provide(scope=Scope.APP)
    async def database(self, settings: Settings) -> AsyncIterator[Database]:
        assert settings.database_url is not None, "DATABASE_URL is set by the CLI or the caller"
        db = Database(
            PoolSettings(
                dsn=settings.database_url,
                min_size=settings.db_pool_min_size,
                max_size=settings.db_pool_max_size,
                acquire_timeout=settings.db_pool_timeout,
                connect_timeout=settings.db_connect_timeout,
                statement_timeout=settings.db_statement_timeout,
                connection_class=TracedConnection if settings.telemetry_enabled else asyncpg.Connection,
            )
        )
        await db.open()
        yield db
        await db.close()

    @provide(scope=Scope.REQUEST)
    def unit_of_work(self, db: Database, settings: Settings) -> UnitOfWork:
        lifetime = settings.idempotency_key_hours * 3600
        if settings.telemetry_enabled:
            return PostgresUnitOfWork(
                db,
                on_commit=count_committed,
                traceparent=current_traceparent,
                idempotency_key_lifetime=lifetime,
            )
        return PostgresUnitOfWork(db, idempotency_key_lifetime=lifetime)

    reader = provide(PostgresUserReader, provides=UserReader, scope=Scope.APP)


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
