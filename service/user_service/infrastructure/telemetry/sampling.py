"""Sampling by outcome: a request's trace is kept when it failed, was slow, carried a trusted sampled
`traceparent`, or falls in a ratio of the rest (README: Telemetry, "Which traces are kept").

- `OutcomeTracerProvider` hands out `OutcomeTracer`s, whose spans are `RecordedSpan`s: a handful of plain
  fields, no SDK span, no span processor, no lock while the request runs. Every span is recording (logs
  carry trace ids whatever is kept), and what it costs before the decision is its fields.
- A local root (a request's server span, the relay's publish span) carries its trace's `Decision`, shared
  by the children made under it. Its *early* part is the sampled flag, known when the root starts: a
  trusted sampled parent, or the ratio, decided from the trace id alone (the same trace id gets the same
  answer in every process); a root whose parent is remote and not a server span (the relay's publish
  span, whose parent is the outbox row's `traceparent`) follows that parent's flag, which is the request's
  decision at its commit. `keep` marks it later: the request failed or was slow.
- A child that is over as soon as it is known (an SQL statement, `RecordedSpan.record_child`) is recorded
  in one step, after it ended: its fields only, its span id made if the trace is kept.
- When the root ends, a kept trace's spans become the SDK's `ReadableSpan`s and go to the export queues;
  a dropped one costs nothing more. A request that never ends holds nothing global: its spans go with it.
  A trace keeps at most `max_spans` spans; the rest are counted as dropped. A span that ends after its
  root follows the decision made then.
- `TraceparentTrust` decides whether an incoming `traceparent` is continued at all.
"""

import random
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import Protocol

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util import types

_RATIO_BITS = 64
_RATIO_MASK = (1 << _RATIO_BITS) - 1
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_MAX_ATTRIBUTES = 128  # the SDK's default span limits, applied when a kept span is exported
_MAX_EVENTS = 128
_MAX_LINKS = 128
UNSET_STATUS = Status(StatusCode.UNSET)  # immutable: one for every span that sets none


def ratio_bound(ratio: float) -> int:
    """The lower 64 bits of a trace id below this bound fall in `ratio` (as the SDK's TraceIdRatioBased)."""
    return round(min(max(ratio, 0.0), 1.0) * (1 << _RATIO_BITS))


def in_ratio(trace_id: int, bound: int) -> bool:
    return (trace_id & _RATIO_MASK) < bound


class Forward(Protocol):
    """Where kept spans go (the export queues), shut down and flushed with the provider."""

    def emit(self, span: ReadableSpan) -> None: ...

    def shutdown(self) -> None: ...

    def force_flush(self, timeout_millis: int = 30000) -> bool: ...


class OverflowCounter(Protocol):
    def __call__(self, spans: int) -> None: ...


class Decision:
    """One local root's trace: whether it is kept, and its ended spans until the root ends."""

    __slots__ = ("decided", "keep", "spans", "started_ns")

    def __init__(self, keep: bool, started_ns: int) -> None:
        self.keep = keep
        self.started_ns = started_ns
        self.decided = False
        self.spans: list[RecordedSpan | EndedChild] = []


class RecordedSpan(trace.Span):
    """A span of the outcome policy: recorded as plain fields, turned into an SDK span only if kept."""

    __slots__ = (
        "_attributes",
        "_context",
        "_end",
        "_events",
        "_flags",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_span_id",
        "_start",
        "_state",
        "_status",
        "_trace_id",
        "_tracer",
        "decision",
        "is_root",
    )

    def __init__(  # noqa: PLR0917 - a span's fields
        self,
        tracer: "OutcomeTracer",
        decision: Decision,
        name: str,
        ids: tuple[int, int, TraceFlags, TraceState | None],
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: types.Attributes,
        links: Sequence[Link] | None,
        start_time: int,
        root: bool,
    ) -> None:
        self._tracer = tracer
        self.decision = decision  # plain attributes, not properties: read on every span's end
        self._name = name
        # The SpanContext is made when asked for: a log line reads the ids directly (`trace_fields`).
        self._trace_id, self._span_id, self._flags, self._state = ids
        self._context: SpanContext | None = None
        self._parent = parent
        self._kind = kind
        self._attributes: dict[str, types.AnyValue] = dict(attributes) if attributes else {}
        self._links = list(links) if links else []
        self._events: list[Event] = []
        self._status = UNSET_STATUS
        self._start = start_time
        self._end: int | None = None
        self.is_root = root

    def get_span_context(self) -> SpanContext:
        if self._context is None:
            self._context = SpanContext(self._trace_id, self._span_id, False, self._flags, self._state)
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end is None:
            self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end is None:
            self._attributes.update(attributes)

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self._end is None and len(self._events) < _MAX_EVENTS:
            self._events.append(Event(name, attributes, timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end is None and context.is_valid and len(self._links) < _MAX_LINKS:
            self._links.append(Link(context, attributes))

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end is not None or self._status.status_code is StatusCode.OK:
            return  # as the SDK: OK is final
        self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module, qualname = type(exception).__module__, type(exception).__qualname__
        fields: dict[str, types.AnyValue] = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            fields.update(attributes)
        self.add_event("exception", fields, timestamp)

    @property
    def resource(self) -> Resource:
        return self._tracer.resource

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time or time.time_ns()
        self._tracer.policy.ended(self)

    def record_child(  # noqa: PLR0917 - a span's fields
        self,
        scope: InstrumentationScope,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, types.AnyValue],
        start_time: int,
        end_time: int,
        status: Status = UNSET_STATUS,
        more: tuple[tuple[str, types.AnyValue], ...] = (),
    ) -> None:
        """A child of this span that has already ended, recorded in one step (no span object while it ran,
        no span id unless its trace is kept); it follows this span's decision like any child.

        Its attributes are `attributes` (shared between children: not copied, so not to be changed) and
        then the pairs of `more`, merged only if the trace is kept."""
        child = EndedChild(self, scope, name, kind, attributes, more, start_time, end_time, status)
        spans, policy = self.decision.spans, self._tracer.policy
        if not self.decision.decided and len(spans) < policy.max_spans - 1:
            spans.append(child)  # what `ended` does with it, the common case without its call
        else:
            policy.ended(child)

    def readable(self) -> ReadableSpan:
        """The SDK's form of this span, as the exporters take it (its trace kept: the sampled flag set)."""
        return ReadableSpan(
            self._name,
            SpanContext(self._trace_id, self._span_id, False, _SAMPLED, self._state),
            self._parent,
            self._tracer.resource,
            BoundedAttributes(_MAX_ATTRIBUTES, self._attributes, immutable=True),
            tuple(self._events),
            tuple(self._links),
            self._kind,
            status=self._status,
            start_time=self._start,
            end_time=self._end,
            instrumentation_scope=self._tracer.scope,
        )

    def __repr__(self) -> str:
        return f"RecordedSpan(name={self._name!r}, trace_id=0x{self._trace_id:032x})"


class EndedChild:
    """A child recorded after it ended (`RecordedSpan.record_child`): a statement's fields until export."""

    __slots__ = (
        "_attributes",
        "_end",
        "_kind",
        "_more",
        "_name",
        "_parent",
        "_scope",
        "_start",
        "_status",
        "decision",
    )

    is_root = False

    def __init__(  # noqa: PLR0917 - a span's fields
        self,
        parent: RecordedSpan,
        scope: InstrumentationScope,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, types.AnyValue],
        more: tuple[tuple[str, types.AnyValue], ...],
        start_time: int,
        end_time: int,
        status: Status,
    ) -> None:
        self.decision = parent.decision
        self._parent = parent
        self._scope = scope
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._more = more
        self._start = start_time
        self._end = end_time
        self._status = status

    def readable(self) -> ReadableSpan:
        parent = self._parent.get_span_context()
        return ReadableSpan(
            self._name,
            SpanContext(parent.trace_id, _new_span_id(), False, _SAMPLED, parent.trace_state),
            parent,
            self._parent.resource,
            BoundedAttributes(_MAX_ATTRIBUTES, {**self._attributes, **dict(self._more)}, immutable=True),
            (),
            (),
            self._kind,
            status=self._status,
            start_time=self._start,
            end_time=self._end,
            instrumentation_scope=self._scope,
        )


def _new_trace_id() -> int:
    while not (trace_id := random.getrandbits(128)):  # as the SDK's RandomIdGenerator; 0 is invalid
        pass
    return trace_id


def _new_span_id() -> int:
    while not (span_id := random.getrandbits(64)):
        pass
    return span_id


class OutcomePolicy:
    """The policy's settings and where its kept spans go; the decisions live on the spans' `Decision`s."""

    def __init__(
        self,
        forward: Forward,
        ratio: float,
        slow_seconds: float,
        *,
        max_spans: int = 512,
        on_overflow: OverflowCounter | None = None,
    ) -> None:
        self.forward = forward
        self.bound = ratio_bound(ratio)
        self.slow_ns = int(slow_seconds * 1e9)
        self.max_spans = max_spans
        self._overflow = on_overflow

    def ended(self, span: "RecordedSpan | EndedChild") -> None:
        decision = span.decision
        if decision.decided:  # its root has ended: the decision made then stands
            if decision.keep:
                self.forward.emit(span.readable())
            return
        if span.is_root:
            decision.decided = True
            spans, decision.spans = decision.spans, []
            if decision.keep:
                for ended in spans:
                    self.forward.emit(ended.readable())
                self.forward.emit(span.readable())
        elif len(decision.spans) < self.max_spans - 1:  # the root always has its place
            decision.spans.append(span)
        elif self._overflow is not None:
            self._overflow(1)

    def keep(self, span: trace.Span) -> None:
        """Keep the trace of `span` (a request that failed or was slow), whatever its early decision."""
        if isinstance(span, RecordedSpan):
            span.decision.keep = True

    def kept_now(self, span: trace.Span) -> bool:
        """Whether the trace of `span` is kept as of now: early, marked, or already slower than the limit
        (a request that is slow at its commit stays slow, so the trace is marked kept here)."""
        if not isinstance(span, RecordedSpan):
            return span.get_span_context().trace_flags.sampled
        decision = span.decision
        if not decision.keep and time.time_ns() - decision.started_ns >= self.slow_ns:
            decision.keep = True
        return decision.keep


def is_kept(span: trace.Span) -> bool:
    """The decision on `span`'s trace so far (the early one, or a mark made since; no clock read)."""
    fields = trace_fields(span)
    return fields is not None and fields[2]


def trace_fields(span: trace.Span) -> tuple[int, int, bool] | None:
    """What a log line carries of `span`: its trace id, its span id and the decision on its trace so far;
    None for no valid span. One call, and no SpanContext made for a `RecordedSpan`."""
    if isinstance(span, RecordedSpan):
        return span._trace_id, span._span_id, span.decision.keep
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return ctx.trace_id, ctx.span_id, ctx.trace_flags.sampled


class OutcomeTracer(trace.Tracer):
    """Makes `RecordedSpan`s: a child shares its parent's decision, a local root starts one."""

    def __init__(self, policy: OutcomePolicy, resource: Resource, scope: InstrumentationScope) -> None:
        self.policy = policy
        self.resource = resource
        self.scope = scope

    def start_span(  # noqa: PLR0917 - the API's signature
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        start = start_time or time.time_ns()
        current = trace.get_current_span(context)
        parent: SpanContext | None = current.get_span_context()
        assert parent is not None
        ids: tuple[int, int, TraceFlags, TraceState | None]
        if isinstance(current, RecordedSpan):
            decision, root = current.decision, False
            ids = (parent.trace_id, _new_span_id(), parent.trace_flags, parent.trace_state)
        else:
            root = True
            if parent.is_valid:  # a remote parent: the caller's (trusted), or the outbox row's
                trace_id = parent.trace_id
                early = parent.trace_flags.sampled or (
                    parent.is_remote and kind is SpanKind.SERVER and in_ratio(trace_id, self.policy.bound)
                )
                state = parent.trace_state
            else:
                parent, trace_id, state = None, _new_trace_id(), None
                early = in_ratio(trace_id, self.policy.bound)
            decision = Decision(early, start)
            ids = (trace_id, _new_span_id(), _SAMPLED if early else _NOT_SAMPLED, state)
        return RecordedSpan(self, decision, name, ids, parent, kind, attributes, links, start, root)

    def start_root_span(
        self, name: str, kind: SpanKind, attributes: types.Attributes, links: Sequence[Link] | None
    ) -> RecordedSpan:
        """`start_span` of a span known to have no parent (a request that brought no trace context): a
        new trace, without looking for a parent in a context."""
        start, trace_id = time.time_ns(), _new_trace_id()
        early = in_ratio(trace_id, self.policy.bound)
        ids = (trace_id, _new_span_id(), _SAMPLED if early else _NOT_SAMPLED, None)
        return RecordedSpan(
            self, Decision(early, start), name, ids, None, kind, attributes, links, start, True
        )

    @contextmanager  # the API's own decorator is private; this one does the same for `with` and `@`
    def start_as_current_span(  # type: ignore[override]  # noqa: PLR0917 - the API's signature
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class _ForwardOnShutdown(SpanProcessor):
    """The export queues, flushed and shut down with the provider (spans reach them by `emit`)."""

    def __init__(self, forward: Forward) -> None:
        self._forward = forward

    def shutdown(self) -> None:
        self._forward.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._forward.force_flush(timeout_millis)


class OutcomeTracerProvider(TracerProvider):
    """The SDK's provider (resource, shutdown, flush) whose tracers record by outcome."""

    def __init__(self, resource: Resource, policy: OutcomePolicy) -> None:
        super().__init__(resource=resource, shutdown_on_exit=False)
        self.policy = policy
        self.add_span_processor(_ForwardOnShutdown(policy.forward))
        self._outcome_tracers: dict[tuple[str, str, str | None], OutcomeTracer] = {}

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace.Tracer:
        key = (instrumenting_module_name, instrumenting_library_version or "", schema_url)
        tracer = self._outcome_tracers.get(key)
        if tracer is None:
            scope = InstrumentationScope(*key, attributes)
            tracer = self._outcome_tracers[key] = OutcomeTracer(self.policy, self.resource, scope)
        return tracer


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
