"""Sampling by outcome: a request's trace is kept when it failed, was slow, carried a trusted sampled
`traceparent`, or falls in a ratio of the rest (README: Telemetry, "Which traces are kept").

- `OutcomeSampler` records every span. Its sampled flag is the *early* decision, known when the root
  starts: a trusted sampled parent, or the ratio, decided from the trace id alone (the same trace id gets
  the same answer in every process). A child inherits its parent's flag; a span whose parent is remote and
  not a server span (the relay's publish span, whose parent is the outbox row's `traceparent`) follows that
  parent's flag, which is the request's decision at its commit.
- `KeepByOutcome` holds a trace's ended spans until its local root ends, then hands them to the export
  processor if the trace was kept (early, or marked by `keep` at the end of the request: 5xx or slow), and
  drops them otherwise, before any export work. Its bookkeeping is a dict lookup and a list append per
  span under one uncontended lock; a root that never ends cannot hold more than `max_traces` traces of at
  most `max_spans` spans each.
- `TraceparentTrust` decides whether an incoming `traceparent` is continued at all.
"""

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanContext, SpanKind, get_current_span
from opentelemetry.util.types import Attributes

_RATIO_BITS = 64
_RATIO_MASK = (1 << _RATIO_BITS) - 1


def ratio_bound(ratio: float) -> int:
    """The lower 64 bits of a trace id below this bound fall in `ratio` (as the SDK's TraceIdRatioBased)."""
    return round(min(max(ratio, 0.0), 1.0) * (1 << _RATIO_BITS))


def in_ratio(trace_id: int, bound: int) -> bool:
    return (trace_id & _RATIO_MASK) < bound


class OutcomeSampler(Sampler):
    """Records every span; the sampled flag says whether the trace is kept already at its start."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self._bound = ratio_bound(ratio)

    def should_sample(  # noqa: PLR0917 - the SDK's signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: object = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if parent.is_valid and (not parent.is_remote or kind is not SpanKind.SERVER):
            sampled = parent.trace_flags.sampled  # a child; or the publish of a stored decision
        else:  # a request's root: a new trace, or a remote parent the trust setting let through
            sampled = (parent.is_valid and parent.trace_flags.sampled) or in_ratio(trace_id, self._bound)
        decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.RECORD_ONLY
        return SamplingResult(decision, attributes, parent.trace_state if parent.is_valid else None)

    def get_description(self) -> str:
        return f"OutcomeSampler{{ratio={self.ratio}}}"


class Forward(Protocol):
    """Where kept spans go (the export queues), shut down and flushed with the processor."""

    def emit(self, span: ReadableSpan) -> None: ...

    def shutdown(self) -> None: ...

    def force_flush(self, timeout_millis: int = 30000) -> bool: ...


@dataclass(slots=True)
class _Trace:
    started_ns: int
    keep: bool
    roots: int = 1
    spans: list[ReadableSpan] = field(default_factory=list)


def _is_local_root(span: ReadableSpan) -> bool:
    return span.parent is None or span.parent.is_remote


class KeepByOutcome(SpanProcessor):
    """Buffers each trace until its local root ends; forwards the kept ones, drops the rest unexported."""

    def __init__(
        self,
        forward: Forward,
        slow_seconds: float,
        *,
        max_traces: int = 4096,
        max_spans: int = 512,
        on_overflow: "OverflowCounter | None" = None,
    ) -> None:
        self._forward = forward
        self.slow_ns = int(slow_seconds * 1e9)
        self._max_traces = max_traces
        self._max_spans = max_spans
        self._open: dict[int, _Trace] = {}
        self._lock = threading.Lock()
        self._overflow = on_overflow

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not _is_local_root(span):
            return
        ctx = span.get_span_context()
        evicted = None
        with self._lock:
            entry = self._open.get(ctx.trace_id)
            if entry is not None:  # a second local root in one trace (two requests of one caller's trace)
                entry.roots += 1
                entry.keep = entry.keep or ctx.trace_flags.sampled
                return
            if len(self._open) >= self._max_traces:  # the oldest: a root that never ended
                evicted = self._open.pop(next(iter(self._open)))
            self._open[ctx.trace_id] = _Trace(span.start_time or time.time_ns(), ctx.trace_flags.sampled)
        if evicted is not None and self._overflow is not None:
            self._overflow(len(evicted.spans))

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        assert ctx is not None
        done = None
        with self._lock:
            entry = self._open.get(ctx.trace_id)
            if entry is None:  # its trace was decided (or never seen): its own flag says
                if ctx.trace_flags.sampled:
                    self._forward.emit(span)
                return
            if len(entry.spans) < self._max_spans:
                entry.spans.append(span)
            elif self._overflow is not None:
                self._overflow(1)
            if _is_local_root(span):
                entry.roots -= 1
                if entry.roots <= 0:
                    done = self._open.pop(ctx.trace_id)
        if done is not None and done.keep:
            for buffered in done.spans:
                self._forward.emit(buffered)

    def keep(self, ctx: SpanContext) -> None:
        """Keep the trace of `ctx` (a request that failed or was slow), whatever its early decision."""
        entry = self._open.get(ctx.trace_id)
        if entry is not None:
            entry.keep = True

    def kept_now(self, ctx: SpanContext) -> bool:
        """Whether the trace of `ctx` is kept as of now: early, marked, or already slower than the limit
        (a request that is slow at its commit stays slow, so the trace is marked kept here)."""
        if ctx.trace_flags.sampled:
            return True
        entry = self._open.get(ctx.trace_id)
        if entry is None:
            return False
        if not entry.keep and time.time_ns() - entry.started_ns >= self.slow_ns:
            entry.keep = True
        return entry.keep

    def marked(self, ctx: SpanContext) -> bool:
        """Whether the trace of `ctx` is kept so far (no clock read: for log lines)."""
        if ctx.trace_flags.sampled:
            return True
        entry = self._open.get(ctx.trace_id)
        return entry is not None and entry.keep

    def shutdown(self) -> None:
        with self._lock:
            self._open.clear()  # traces still open at the end were never decided: dropped
        self._forward.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._forward.force_flush(timeout_millis)


# The process's policy, set by telemetry.tracing; read here by the log processor (without the exporters).
active: KeepByOutcome | None = None


def is_kept(ctx: SpanContext) -> bool:
    """The decision on `ctx`'s trace so far (the early one, or a mark made since)."""
    return active.marked(ctx) if active is not None else ctx.trace_flags.sampled


class OverflowCounter(Protocol):
    def __call__(self, spans: int) -> None: ...


class Trust(StrEnum):
    IGNORE = "ignore"
    TRUST = "trust"
    LIMIT = "limit"


class TraceparentTrust:
    """Whether an incoming `traceparent` is continued: never (`ignore`: a new trace, linked to the
    caller's), always (`trust`), or up to `per_second` requests a second (`limit`; the rest as `ignore`).
    """

    def __init__(self, mode: Trust, per_second: float = 10.0) -> None:
        self.mode = mode
        self.per_second = per_second
        self._tokens = per_second
        self._last = time.monotonic()

    def continues(self) -> bool:
        if self.mode is Trust.TRUST:
            return True
        if self.mode is Trust.IGNORE:
            return False
        now = time.monotonic()
        self._tokens = min(self.per_second, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
