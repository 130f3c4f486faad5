"""Traces: an OpenTelemetry SDK tracer provider, sampled by outcome, exported as the OTEL_* variables say.

Every span is recorded (logs carry trace ids whatever is kept). Which traces leave the process is decided
when their request ends (telemetry.sampling); OTEL_TRACES_SAMPLER, when set, replaces that policy by the
SDK's plain sampling. The variables are read and checked by telemetry.otel_environment; the export path
is bounded (telemetry.span_export) so a dead collector costs neither the requests nor the shutdown.
"""

from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler, _get_from_env_or_default
from opentelemetry.trace import Span

from user_service import __version__
from user_service.infrastructure.telemetry.otel_environment import OtelEnvironment, read_otel_environment
from user_service.infrastructure.telemetry.sampling import (
    OutcomePolicy,
    OutcomeTracerProvider,
    TraceparentTrust,
    Trust,
    trace_fields,
)
from user_service.infrastructure.telemetry.span_export import (
    ExportQueue,
    GuardedExporter,
    count_buffer_overflow,
    shutdown_within,
)

SHUTDOWN_FLUSH_SECONDS = 1.0  # what the flush at shutdown may add to SHUTDOWN_TIMEOUT


@dataclass(frozen=True)
class TracePolicy:
    """Which traces are kept: TRACE_SAMPLE_RATIO, TRACE_SLOW_SECONDS, TRACEPARENT_TRUST(_LIMIT)."""

    sample_ratio: float = 0.1
    slow_seconds: float = 0.25
    trust: Trust = Trust.IGNORE
    trust_per_second: float = 10.0


_provider: TracerProvider | None = None
_outcome: OutcomePolicy | None = None
_fanout: "_Fanout | None" = None
_trust = TraceparentTrust(Trust.IGNORE)


def _exporters(otel: OtelEnvironment) -> list[tuple[SpanExporter, str]]:
    exporters: list[tuple[SpanExporter, str]] = []
    for name in otel.exporters:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append((ConsoleSpanExporter(), "console"))
        elif otel.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

            exporters.append((Grpc(timeout=otel.export_timeout), "otlp grpc"))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

            exporters.append((Http(timeout=otel.export_timeout), "otlp http/protobuf"))
    return exporters


def _queue(exporter: SpanExporter, description: str, otel: OtelEnvironment) -> ExportQueue:
    return ExportQueue(
        GuardedExporter(exporter, description),
        max_queue_size=otel.max_queue_size,
        schedule_delay_millis=otel.schedule_delay_ms,
        max_export_batch_size=otel.max_export_batch_size,
        export_timeout_millis=otel.bsp_export_timeout_ms,
    )


class _Fanout:
    """The export queues behind the sampling processor (one per exporter)."""

    def __init__(self, queues: list[ExportQueue]) -> None:
        self.queues = queues

    def emit(self, span: ReadableSpan) -> None:
        for queue in self.queues:
            queue.emit(span)

    def shutdown(self) -> None:
        for queue in self.queues:
            queue.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(queue.force_flush(timeout_millis) for queue in self.queues)


def configure_tracing(
    environment: str,
    exporter: SpanExporter | None = None,
    policy: TracePolicy | None = None,
    otel: OtelEnvironment | None = None,
) -> TracerProvider | None:
    """Install the global tracer provider once per process (SQL statements: telemetry.sql).

    None when OTEL_SDK_DISABLED=true: the API's no-op tracer then, and no trace ids anywhere.
    """
    global _provider, _outcome, _fanout, _trust  # noqa: PLW0603 - the tracer provider is set once per process
    policy = policy or TracePolicy()
    otel = otel or read_otel_environment()
    if _provider is not None:
        if exporter is not None:
            queue = _queue(exporter, type(exporter).__name__, otel)
            if _fanout is not None:
                _fanout.queues.append(queue)
            else:
                _provider.add_span_processor(queue)
        return _provider
    if otel.disabled:
        return None
    attributes: dict[str, str] = {
        "service.name": "user-service",
        "service.version": __version__,
        "deployment.environment.name": environment,
        **otel.resource,
    }
    exporters = _exporters(otel) + ([(exporter, type(exporter).__name__)] if exporter is not None else [])
    queues = [_queue(e, description, otel) for e, description in exporters]
    resource = Resource.create(attributes)
    provider: TracerProvider
    if otel.sampler is None:
        _fanout = _Fanout(queues)
        _outcome = OutcomePolicy(
            _fanout, policy.sample_ratio, policy.slow_seconds, on_overflow=count_buffer_overflow
        )
        provider = OutcomeTracerProvider(resource, _outcome)
    else:
        sampler: Sampler = _get_from_env_or_default()
        provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
        for queue in queues:
            provider.add_span_processor(queue)
    _trust = TraceparentTrust(policy.trust, policy.trust_per_second)
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing(seconds: float = SHUTDOWN_FLUSH_SECONDS) -> None:
    """Export what is queued, for at most `seconds` whatever the collector does."""
    if _provider is not None:
        shutdown_within(_provider, seconds)


def continues_incoming_trace() -> bool:
    """Whether a request's incoming `traceparent` is continued (TRACEPARENT_TRUST)."""
    return _trust.continues()


def keep_request(span: Span, *, failed: bool, duration: float) -> bool:
    """The final decision on a request's trace, at its end; True if it is exported."""
    if _outcome is None:
        return span.get_span_context().trace_flags.sampled
    if failed or duration >= _outcome.slow_ns / 1e9 or _outcome.kept_now(span):
        _outcome.keep(span)
        return True
    return False


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, stored with outbox rows so the publish joins the trace.

    Its sampled flag is the decision known now, at the commit (a trusted parent, the ratio, or already
    slower than TRACE_SLOW_SECONDS): the relay exports the publish span of a flagged row only. A request
    that becomes kept only after its commit (slow or failed afterwards) is exported without its publish.
    """
    span = trace.get_current_span()
    if (fields := trace_fields(span)) is None:
        return None
    trace_id, span_id, kept = fields
    sampled = _outcome.kept_now(span) if _outcome is not None else kept
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"
