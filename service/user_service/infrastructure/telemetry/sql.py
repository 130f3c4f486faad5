"""One client span per SQL statement, as a child of the span that runs it.

The pool's connections are `TracedConnection`s (asyncpg's `connection_class`) when telemetry is on.
Compared with patching asyncpg globally (opentelemetry-instrumentation-asyncpg) it does less per
statement: the connection's attributes are read once, the operation name of each distinct statement
once per connection, and the span is never made current, since nothing runs inside a statement
(README: Traces).

A statement with no recording span around it (the relay's polling, a readiness probe, a scrape, or a
request that was not sampled) makes no span at all, rather than a trace of one span.

Attributes, by the stable database conventions: `db.system.name` (`postgresql`), `db.namespace`,
`server.address`, `server.port`, `db.query.text`, and `db.operation.name` (SELECT, INSERT, BEGIN, ...),
the dimension of the span metrics by statement type; `db.instance.role` is `primary` or `replica`: where
the statement was served (the replica's pool connects with `ReplicaTracedConnection`).

Every statement, recorded or not, is timed into `db.client.operation.duration`
(`db_client_operation_duration_seconds{db_system_name, db_operation_name, db_instance_role}`): a clock
read and a histogram observation, the histogram's child looked up once per statement type.
A data-modifying `WITH` is named by its first statement: the aggregate's write (INSERT, UPDATE) that its
outbox rows accompany.
"""

import re
import time
from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AnyValue

from user_service.infrastructure.telemetry.loop_metrics import Observer
from user_service.infrastructure.telemetry.metrics import DB_OPERATION_DURATION, Children
from user_service.infrastructure.telemetry.sampling import UNSET_STATUS, RecordedSpan

SYSTEM = "postgresql"
_SCOPE_NAME = "user_service.sql"
_tracer = trace.get_tracer(_SCOPE_NAME)
_SCOPE = InstrumentationScope(_SCOPE_NAME)
_FIRST_STATEMENT = re.compile(
    r"\s*WITH\s+\w+\s+AS\s*\(\s*(INSERT|UPDATE|DELETE|SELECT|MERGE)\b", re.IGNORECASE
)
_durations = Children(DB_OPERATION_DURATION)


def operation_name(query: str) -> str:
    """The statement type of `query`: its first keyword, or for a `WITH`, its first inner statement
    (worked out once per statement text and connection: `TracedConnection._statement`)."""
    words = query.split(maxsplit=1)
    name = words[0].rstrip(";").upper() if words else "SQL"
    if name == "WITH" and (first := _FIRST_STATEMENT.match(query)):
        name = first.group(1).upper()
    return name


class TracedConnection(asyncpg.Connection):
    """An asyncpg connection whose statements are spans (see the module's docstring)."""

    role = "primary"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        attributes: dict[str, str | int] = {"db.system.name": SYSTEM, "db.instance.role": self.role}
        params, addr = getattr(self, "_params", None), getattr(self, "_addr", None)
        if database := getattr(params, "database", None):
            attributes["db.namespace"] = database
        if isinstance(addr, tuple):
            attributes["server.address"], attributes["server.port"] = addr[0], addr[1]
        elif isinstance(addr, str):
            attributes["server.address"] = addr  # a Unix socket's path
        self._span_attributes = attributes
        # Per statement text: its operation name and its histogram series, found with one lookup.
        self._statements: dict[str, tuple[str, Observer]] = {}

    def _statement(self, query: str) -> tuple[str, Observer]:
        operation = operation_name(query)
        entry = (operation, _durations(SYSTEM, operation, self.role))
        if len(self._statements) < 512:  # the service's statements are a few constant strings
            self._statements[query] = entry
        return entry

    async def _traced(self, method: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        operation, duration = self._statements.get(query) or self._statement(query)
        current = trace.get_current_span()
        if not current.is_recording():
            started = time.perf_counter()
            try:
                return await method(query, *args, **kwargs)
            finally:
                duration.observe(time.perf_counter() - started)
        if not isinstance(current, RecordedSpan):  # the SDK's own spans (OTEL_TRACES_SAMPLER)
            return await self._sdk_traced(operation, duration, method, query, *args, **kwargs)
        start_ns, started = time.time_ns(), time.perf_counter()
        more: tuple[tuple[str, AnyValue], ...] = (("db.query.text", query), ("db.operation.name", operation))
        status = UNSET_STATUS
        try:
            return await method(query, *args, **kwargs)
        except BaseException as exc:
            status = Status(StatusCode.ERROR, type(exc).__name__)
            more = (*more, ("error.type", type(exc).__qualname__))
            raise
        finally:
            elapsed = time.perf_counter() - started
            duration.observe(elapsed)
            end_ns = start_ns + int(elapsed * 1e9)
            current.record_child(
                _SCOPE, operation, SpanKind.CLIENT, self._span_attributes, start_ns, end_ns, status, more
            )

    async def _sdk_traced(
        self, operation: str, duration: Observer, method: Any, query: str, *args: Any, **kwargs: Any
    ) -> Any:
        started = time.perf_counter()
        span = _tracer.start_span(
            operation,
            kind=SpanKind.CLIENT,
            attributes={**self._span_attributes, "db.query.text": query, "db.operation.name": operation},
        )
        try:
            return await method(query, *args, **kwargs)
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__qualname__)
            raise
        finally:
            duration.observe(time.perf_counter() - started)
            span.end()

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._traced(super().execute, query, *args, **kwargs)

    async def executemany(self, command: str, *args: Any, **kwargs: Any) -> Any:
        return await self._traced(super().executemany, command, *args, **kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._traced(super().fetch, query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._traced(super().fetchrow, query, *args, **kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._traced(super().fetchval, query, *args, **kwargs)


class ReplicaTracedConnection(TracedConnection):
    """A connection of the replica's pool: its spans say so."""

    role = "replica"
