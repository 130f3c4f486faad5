"""Traces: an OpenTelemetry SDK tracer provider, exported over OTLP/HTTP when an endpoint is set.

Without OTEL_EXPORTER_OTLP_ENDPOINT spans still exist (logs carry their ids), nothing leaves the process.
The standard OTEL_* variables (sampler, headers, endpoint per signal) are read by the SDK itself.
"""

import os

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from user_service import __version__

_provider: TracerProvider | None = None


def configure_tracing(environment: str, exporter: SpanExporter | None = None) -> TracerProvider:
    """Install the global tracer provider once per process (SQL statements: telemetry.sql)."""
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
    if exporter is None and (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
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
