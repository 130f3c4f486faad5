"""SQL statement spans: named by statement type, children of a recording span only, errors marked; the same
whether the SDK makes them (OTEL_TRACES_SAMPLER) or the outcome policy records them after they ended."""

import asyncpg
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from user_service.infrastructure.telemetry import sql
from user_service.infrastructure.telemetry.sampling import OutcomePolicy, OutcomeTracerProvider
from user_service.infrastructure.telemetry.sql import (
    ReplicaTracedConnection,
    TracedConnection,
    operation_name,
)


class Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: object) -> SpanExportResult:
        self.spans.extend(spans)  # type: ignore[arg-type]
        return SpanExportResult.SUCCESS

    # The outcome policy's side: its kept spans arrive one by one.
    def emit(self, span: ReadableSpan) -> None:
        self.spans.append(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("SELECT id FROM users WHERE id = $1", "SELECT"),
        ("  insert into users VALUES ($1)", "INSERT"),
        ("BEGIN;", "BEGIN"),
        ("COMMIT", "COMMIT"),
        ("WITH w AS (INSERT INTO users VALUES ($1) RETURNING id) INSERT INTO outbox SELECT 1", "INSERT"),
        ("with w as ( update users set x = 1 returning id ) insert into outbox select 1", "UPDATE"),
        ("WITH recent AS (SELECT 1) SELECT * FROM recent", "SELECT"),
        ("", "SQL"),
    ],
)
def test_the_operation_name_is_the_statement_type(query: str, name: str) -> None:
    assert operation_name(query) == name


@pytest.fixture(params=["sdk", "outcome"])
def tracing(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> tuple[TracerProvider, Collect]:
    exported = Collect()
    if request.param == "sdk":
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exported))
        monkeypatch.setattr(sql, "_tracer", provider.get_tracer("test"))
    else:  # every trace kept, so every statement's span is seen
        provider = OutcomeTracerProvider(Resource.create({}), OutcomePolicy(exported, 1.0, 60.0))
    return provider, exported


async def test_statements_are_children_of_the_recording_span_and_errors_are_marked(
    database_url: str, tracing: tuple[TracerProvider, Collect]
) -> None:
    provider, exported = tracing
    conn = await asyncpg.connect(database_url, connection_class=TracedConnection)
    try:
        await conn.fetchval("SELECT 1")  # no span around it: no span of its own
        assert exported.spans == []
        with provider.get_tracer("test").start_as_current_span("request") as request:
            assert await conn.fetchrow("SELECT $1::int AS n", 7) == (7,)
            await conn.execute("SELECT 1")
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.fetch("SELECT * FROM no_such_table")
    finally:
        await conn.close()
    statements = [s for s in exported.spans if s.name != "request"]
    assert [s.name for s in statements] == ["SELECT", "SELECT", "SELECT"]
    for span in statements:
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id
        assert span.attributes is not None
        assert span.attributes["db.system.name"] == "postgresql"
        assert span.attributes["db.operation.name"] == "SELECT"
        assert span.attributes["server.address"]  # a host, or the socket's path
        assert span.attributes["db.namespace"]
        assert not {"db.system", "db.name", "db.statement", "net.peer.name"} & set(span.attributes)
        assert span.attributes["db.instance.role"] == "primary"
        assert span.start_time is not None
        assert span.end_time is not None
        assert span.start_time <= span.end_time
    assert len({s.context.span_id for s in statements}) == 3
    assert statements[0].attributes is not None
    assert statements[0].attributes["db.query.text"] == "SELECT $1::int AS n"
    unset, error = StatusCode.UNSET, StatusCode.ERROR
    assert [s.status.status_code for s in statements] == [unset, unset, error]
    assert statements[2].attributes is not None
    assert statements[2].attributes["error.type"] == "UndefinedTableError"


async def test_a_replica_connections_spans_say_where_they_were_served(
    database_url: str, tracing: tuple[TracerProvider, Collect]
) -> None:
    provider, exported = tracing
    conn = await asyncpg.connect(database_url, connection_class=ReplicaTracedConnection)
    try:
        with provider.get_tracer("test").start_as_current_span("request"):
            await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    [statement] = [s for s in exported.spans if s.name != "request"]
    assert statement.attributes is not None
    assert statement.attributes["db.instance.role"] == "replica"


def _statements_timed(operation: str, role: str) -> float:
    from user_service.infrastructure.telemetry.metrics import DB_OPERATION_DURATION

    for family in DB_OPERATION_DURATION.collect():
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels == {
                "db_system_name": "postgresql",
                "db_operation_name": operation,
                "db_instance_role": role,
            }:
                return sample.value
    return 0.0


async def test_every_statement_is_timed_recorded_or_not(
    database_url: str, tracing: tuple[TracerProvider, Collect]
) -> None:
    provider, _ = tracing
    selects, replica_selects = _statements_timed("SELECT", "primary"), _statements_timed("SELECT", "replica")
    conn = await asyncpg.connect(database_url, connection_class=TracedConnection)
    replica = await asyncpg.connect(database_url, connection_class=ReplicaTracedConnection)
    try:
        await conn.fetchval("SELECT 1")  # outside any span
        with provider.get_tracer("test").start_as_current_span("request"):
            await conn.fetchval("SELECT 2")
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.fetch("SELECT * FROM no_such_table")
        await replica.fetchval("SELECT 3")
    finally:
        await conn.close()
        await replica.close()
    assert _statements_timed("SELECT", "primary") == selects + 3
    assert _statements_timed("SELECT", "replica") == replica_selects + 1


async def test_the_policy_records_a_statement_after_it_ended_and_drops_it_with_its_trace(
    database_url: str,
) -> None:
    kept, dropped = Collect(), Collect()
    roots = []
    conn = await asyncpg.connect(database_url, connection_class=TracedConnection)
    try:
        for ratio, exported in ((1.0, kept), (0.0, dropped)):
            provider = OutcomeTracerProvider(Resource.create({}), OutcomePolicy(exported, ratio, 60.0))
            with provider.get_tracer("test").start_as_current_span("request", kind=SpanKind.SERVER) as root:
                roots.append(root)
                await conn.fetchval("SELECT 1")
                assert exported.spans == []  # held until the request's span ends
    finally:
        await conn.close()
    assert dropped.spans == []
    statement, request = kept.spans
    assert request.name == "request"
    assert statement.instrumentation_scope is not None
    assert statement.instrumentation_scope.name == "user_service.sql"
    assert statement.context.trace_id == roots[0].get_span_context().trace_id
    assert statement.parent is not None
    assert statement.parent.span_id == request.context.span_id
    assert statement.context.trace_flags.sampled
    assert statement.resource is request.resource
    assert request.start_time is not None
    assert request.end_time is not None
    assert statement.start_time is not None
    assert statement.end_time is not None
    assert request.start_time <= statement.start_time <= statement.end_time <= request.end_time
