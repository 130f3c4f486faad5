"""Getting spans out without the collector's health reaching the requests or the shutdown.

- The batch processor's queue is bounded (OTEL_BSP_MAX_QUEUE_SIZE): with a dead or black-hole collector
  it fills, and each span that does not fit is dropped and counted, never waited for.
- The exporter is wrapped: a failed export counts its spans as dropped and logs one warning per
  `WARN_INTERVAL` seconds, not one per batch (the SDK's own per-batch lines are silenced).
- The flush at shutdown runs on a daemon thread joined with a deadline: the SDK's flush ignores its own
  timeout and waits for the exporter's retries, which with a dead collector outlasted SHUTDOWN_TIMEOUT.
"""

import logging
import threading
import time
from collections.abc import Sequence

import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import Counter

log = structlog.get_logger(__name__)

# Spans that never reached the collector, by why. Defined here, next to what drops them.
SPANS_DROPPED = Counter(
    "otel_spans_dropped",
    "Spans of kept traces that were not exported: queue_full (the export queue was full), export_failed "
    "(the collector did not take the batch), buffer_full (a trace outgrew the sampling buffer).",
    ["reason"],
)
DROPPED_QUEUE_FULL = SPANS_DROPPED.labels("queue_full")
DROPPED_EXPORT_FAILED = SPANS_DROPPED.labels("export_failed")
DROPPED_BUFFER_FULL = SPANS_DROPPED.labels("buffer_full")

WARN_INTERVAL = 60.0
_SDK_LOGGERS = (
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "opentelemetry.sdk._shared_internal",
)


def count_buffer_overflow(spans: int) -> None:
    DROPPED_BUFFER_FULL.inc(spans)


class GuardedExporter(SpanExporter):
    """`inner`, with failures counted and told once per interval."""

    def __init__(self, inner: SpanExporter, description: str) -> None:
        self.inner = inner
        self.description = description
        self._last_warning = -WARN_INTERVAL
        self._failed_since_warning = 0
        for name in _SDK_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter's bug must not end the export thread
            result = SpanExportResult.FAILURE
            error = f"{type(exc).__name__}: {exc}"[:200]
        else:
            error = "the collector did not accept the batch"
        if result is SpanExportResult.FAILURE:
            DROPPED_EXPORT_FAILED.inc(len(spans))
            self._failed_since_warning += len(spans)
            now = time.monotonic()
            if now - self._last_warning >= WARN_INTERVAL:
                log.warning(
                    "trace export failing; spans are dropped",
                    exporter=self.description,
                    error=error,
                    dropped_spans=self._failed_since_warning,
                    next_warning_in_s=WARN_INTERVAL,
                )
                self._last_warning, self._failed_since_warning = now, 0
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class ExportQueue(BatchSpanProcessor):
    """The SDK's batch processor, fed by the sampling processor with the spans of kept traces.

    `emit` queues a span whatever its sampled flag (a trace kept at its end has flags decided at its
    start), and counts the span the full queue drops. It reaches into the SDK's `BatchProcessor` (its
    queue and `emit`), which the test of a dead collector pins.
    """

    def emit(self, span: ReadableSpan) -> None:
        batch = self._batch_processor
        if len(batch._queue) >= batch._max_queue_size:
            DROPPED_QUEUE_FULL.inc()
        batch.emit(span)

    def on_end(self, span: ReadableSpan) -> None:
        """Added directly to the provider (OTEL_TRACES_SAMPLER set): the SDK's rule, counted drops."""
        if span.context is not None and span.context.trace_flags.sampled:
            self.emit(span)


def shutdown_within(provider: TracerProvider, seconds: float) -> bool:
    """Flush and shut the provider down, waiting at most `seconds`; False if it did not finish in time."""
    done = threading.Event()

    def flush() -> None:
        try:
            provider.shutdown()
        finally:
            done.set()

    threading.Thread(target=flush, name="otel-shutdown", daemon=True).start()
    if done.wait(seconds):
        return True
    log.warning("trace export did not finish in time; the unexported spans are dropped", waited_s=seconds)
    return False
