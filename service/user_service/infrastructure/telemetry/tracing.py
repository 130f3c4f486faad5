"""Traces: an OpenTelemetry SDK tracer provider, exported over OTLP/HTTP when an endpoint is set.

Without OTEL_EXPORTER_OTLP_ENDPOINT spans still exist (logs carry their ids), nothing leaves the process.
The standard OTEL_* variables (sampler, headers, endpoint per signal) are read by the SDK itself.
"""

import os
import re

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from user_service import __version__

_provider: TracerProvider | None = None


class SqlOperationName(SpanProcessor):
    """Adds `db.operation.name` (SELECT, INSERT, BEGIN, ...) to the asyncpg spans, for span metrics by
    statement type; the instrumentation names the span by the statement's first word but sets no such
    attribute. A data-modifying `WITH` is named by its first statement: the aggregate's write (INSERT,
    UPDATE) that its outbox rows accompany."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not span.attributes or span.attributes.get("db.system") != "postgresql":
            return
        operation = span.name.rstrip(";").upper()
        if operation == "WITH":
            first = _FIRST_STATEMENT.match(str(span.attributes.get("db.statement", "")))
            if first:
                operation = first.group(1).upper()
                span.update_name(operation)
        span.set_attribute("db.operation.name", operation)


_FIRST_STATEMENT = re.compile(
    r"\s*WITH\s+\w+\s+AS\s*\(\s*(INSERT|UPDATE|DELETE|SELECT|MERGE)\b", re.IGNORECASE
)


def configure_tracing(environment: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """Install the global tracer provider once per process, and trace every SQL statement (asyncpg)."""
    global _provider  # noqa: PLW0603 - the global tracer provider can be set once per process
    if _provider is not None:
        if exporter is not None:
            _provider.add_span_processor(BatchSpanProcessor(exporter))
        return _provider
    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME", "user-service"),
            "service.version": __version__,
            "deployment.environment": environment,
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SqlOperationName())
    if exporter is None and (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument(  # type: ignore[no-untyped-call]
        tracer_provider=provider
    )
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.force_flush(timeout_millis=3000)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, stored with outbox rows so the publish joins the trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")
