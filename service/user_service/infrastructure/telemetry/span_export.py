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
    "(the collector did not take the batch), buffer_full (a request made more than the 512 spans a trace "
    "keeps).",
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


class _OncePerInterval:
    """A warning said at most once per WARN_INTERVAL, with what was dropped meanwhile."""

    def __init__(self, event: str) -> None:
        self.event = event
        self._last = -WARN_INTERVAL
        self._dropped = 0

    def dropped(self, spans: int, **fields: object) -> None:
        self._dropped += spans
        now = time.monotonic()
        if now - self._last >= WARN_INTERVAL:
            log.warning(self.event, dropped_spans=self._dropped, next_warning_in_s=WARN_INTERVAL, **fields)
            self._last, self._dropped = now, 0


class GuardedExporter(SpanExporter):
    """`inner`, with failures counted and told once per interval."""

    def __init__(self, inner: SpanExporter, description: str) -> None:
        self.inner = inner
        self.description = description
        self._warning = _OncePerInterval("trace export failing; spans are dropped")
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
            self._warning.dropped(len(spans), exporter=self.description, error=error)
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

    _full = _OncePerInterval("trace export queue full; spans are dropped")

    def emit(self, span: ReadableSpan) -> None:
        batch = self._batch_processor
        if len(batch._queue) >= batch._max_queue_size:  # the deque drops its oldest span
            DROPPED_QUEUE_FULL.inc()
            self._full.dropped(1, queue_size=batch._max_queue_size)
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
