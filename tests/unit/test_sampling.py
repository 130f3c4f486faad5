"""The outcome policy on its own: what reaches the export queue, and why; and when a request's headers
are read for a trace context at all."""

import gc
import time
import weakref

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from user_service.infrastructure.telemetry.otel_environment import OtelSettingError, read_otel_environment
from user_service.infrastructure.telemetry.sampling import (
    OutcomePolicy,
    OutcomeTracer,
    OutcomeTracerProvider,
    RecordedSpan,
    TraceparentTrust,
    Trust,
    in_ratio,
    is_kept,
    ratio_bound,
)
from user_service.presentation.http import server_span


class Collected:
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.shut = False

    def emit(self, span: ReadableSpan) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        self.shut = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def names(self) -> list[str]:
        return [s.name for s in self.spans]


def pipeline(
    ratio: float, slow: float = 60.0, **bounds: int
) -> tuple[trace.Tracer, OutcomePolicy, Collected, list[int]]:
    collected, overflow = Collected(), []
    policy = OutcomePolicy(collected, ratio, slow, on_overflow=overflow.append, **bounds)
    provider = OutcomeTracerProvider(Resource.create({"service.name": "test"}), policy)
    return provider.get_tracer("test"), policy, collected, overflow


def request(tracer: trace.Tracer, name: str, children: int = 2, **kwargs: object) -> trace.Span:
    root = tracer.start_span(name, kind=SpanKind.SERVER, **kwargs)  # type: ignore[arg-type]
    with trace.use_span(root):
        for i in range(children):
            tracer.start_span(f"{name} child {i}").end()
    return root


def remote(sampled: bool) -> otel_context.Context:
    ctx = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(int(sampled)))
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def test_every_span_records_and_a_dropped_trace_never_reaches_the_export_queue() -> None:
    tracer, _, collected, _ = pipeline(ratio=0.0)
    root = request(tracer, "fast")
    assert root.is_recording()
    assert root.get_span_context().is_valid
    root.end()
    assert not root.is_recording()
    assert collected.spans == []


def test_a_trace_kept_at_its_start_is_forwarded_whole_when_its_root_ends() -> None:
    tracer, _, collected, _ = pipeline(ratio=1.0)
    root = request(tracer, "kept")
    assert collected.spans == []  # held until the root ends
    root.end()
    assert collected.names() == ["kept child 0", "kept child 1", "kept"]


def test_a_kept_span_is_exported_as_the_sdk_makes_it() -> None:
    tracer, _, collected, _ = pipeline(ratio=1.0)
    root = tracer.start_span("GET", kind=SpanKind.SERVER, attributes={"url.path": "/users/1"})
    with trace.use_span(root):
        child = tracer.start_span("SELECT", kind=SpanKind.CLIENT, attributes={"db.operation.name": "SELECT"})
        child.record_exception(ValueError("no such row"))
        child.set_status(StatusCode.ERROR, "ValueError")
        child.end()
    root.update_name("GET /users/{user_id}")
    root.set_attribute("http.response.status_code", 200)
    root.add_link(SpanContext(0x1, 0x2, is_remote=True), {"link.reason": "untrusted_traceparent"})
    root.end()
    exported_child, exported_root = collected.spans
    assert exported_root.name == "GET /users/{user_id}"
    assert exported_root.kind is SpanKind.SERVER
    assert dict(exported_root.attributes or {}) == {"url.path": "/users/1", "http.response.status_code": 200}
    assert exported_root.parent is None
    assert exported_root.resource.attributes["service.name"] == "test"
    assert exported_root.instrumentation_scope is not None
    assert exported_root.instrumentation_scope.name == "test"
    assert [dict(link.attributes or {}) for link in exported_root.links] == [
        {"link.reason": "untrusted_traceparent"}
    ]
    assert exported_root.start_time is not None
    assert exported_root.end_time is not None
    assert exported_root.start_time <= exported_root.end_time
    assert exported_child.parent is not None
    assert exported_root.context is not None
    assert exported_child.parent.span_id == exported_root.context.span_id
    assert exported_child.context is not None
    assert exported_child.context.trace_id == exported_root.context.trace_id
    assert exported_child.context.span_id != exported_root.context.span_id
    assert exported_child.context.trace_flags.sampled
    assert exported_child.status.status_code is StatusCode.ERROR
    (event,) = exported_child.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "ValueError"
    assert "no such row" in str((event.attributes or {})["exception.stacktrace"])


def test_a_trace_marked_before_its_root_ends_is_kept_whatever_its_flag() -> None:
    tracer, policy, collected, _ = pipeline(ratio=0.0)
    root = request(tracer, "failed")
    assert not root.get_span_context().trace_flags.sampled
    assert not is_kept(root)
    policy.keep(root)
    assert is_kept(root)
    root.end()
    assert collected.names() == ["failed child 0", "failed child 1", "failed"]


def test_already_slow_counts_as_kept_before_the_end() -> None:
    tracer, policy, collected, _ = pipeline(ratio=0.0, slow=0.000_001)
    root = request(tracer, "slow")
    time.sleep(0.001)  # past the limit of one microsecond; nothing timed is asserted
    assert policy.kept_now(root)
    root.end()
    assert "slow" in collected.names()


def test_a_span_that_ends_after_its_root_follows_the_decision_made_then() -> None:
    for ratio, expected in ((1.0, ["root", "late"]), (0.0, [])):
        tracer, _, collected, _ = pipeline(ratio=ratio)
        root = tracer.start_span("root", kind=SpanKind.SERVER)
        with trace.use_span(root):
            late = tracer.start_span("late")
        root.end()
        late.end()
        assert collected.names() == expected


def test_the_ratio_is_decided_from_the_trace_id_alone() -> None:
    bound = ratio_bound(0.5)
    assert in_ratio(0x0123_0000_0000_0000_0000_0000_0000_0000, bound)  # lower 64 bits 0
    assert not in_ratio(0xFFFF_FFFF_FFFF_FFFF, bound)
    assert not in_ratio(1, ratio_bound(0.0))
    assert in_ratio((1 << 64) - 1, ratio_bound(1.0))
    tracer, _, collected, _ = pipeline(ratio=0.5)
    roots = [request(tracer, f"r{i}", children=0) for i in range(400)]
    for root in roots:
        root.end()
    expected = {f"r{i}" for i, r in enumerate(roots) if in_ratio(r.get_span_context().trace_id, bound)}
    assert set(collected.names()) == expected
    assert 140 <= len(expected) <= 260  # binomial(400, 0.5): six standard deviations either side


@pytest.mark.parametrize("parent_sampled", [True, False])
def test_a_remote_parent_decides_a_non_server_root_and_only_forces_a_server_root(
    parent_sampled: bool,
) -> None:
    tracer, _, collected, _ = pipeline(ratio=0.0)
    publish = tracer.start_span("publish", context=remote(parent_sampled), kind=SpanKind.PRODUCER)
    assert publish.get_span_context().trace_flags.sampled is parent_sampled
    assert publish.get_span_context().trace_id == 0xABC
    publish.end()
    server = tracer.start_span("server", context=remote(parent_sampled), kind=SpanKind.SERVER)
    assert server.get_span_context().trace_flags.sampled is parent_sampled  # ratio 0: only the parent
    server.end()
    assert collected.names() == (["publish", "server"] if parent_sampled else [])
    if parent_sampled:
        assert [s.parent.span_id for s in collected.spans if s.parent] == [0xDEF, 0xDEF]


def test_two_requests_of_one_trace_are_decided_each_by_its_own_outcome() -> None:
    tracer, policy, collected, _ = pipeline(ratio=0.0)
    first = tracer.start_span("first", context=remote(False), kind=SpanKind.SERVER)
    second = tracer.start_span("second", context=remote(False), kind=SpanKind.SERVER)
    first.end()
    policy.keep(second)
    second.end()
    assert collected.names() == ["second"]


def test_a_root_that_never_ends_is_held_nowhere() -> None:
    tracer, _, collected, _ = pipeline(ratio=1.0)
    leaked = request(tracer, "leak", children=3)
    gone = weakref.ref(leaked)
    del leaked
    gc.collect()
    assert gone() is None
    assert collected.spans == []


def test_a_trace_keeps_its_root_and_at_most_max_spans() -> None:
    tracer, _, collected, overflow = pipeline(ratio=1.0, max_spans=4)
    big = request(tracer, "big", children=10)
    big.end()
    assert collected.names() == ["big child 0", "big child 1", "big child 2", "big"]
    assert sum(overflow) == 7


def test_the_provider_shuts_the_export_queues_down() -> None:
    collected = Collected()
    provider = OutcomeTracerProvider(Resource.get_empty(), OutcomePolicy(collected, 0.1, 0.25))
    assert provider.get_tracer("a") is provider.get_tracer("a")
    provider.shutdown()
    assert collected.shut


def test_trust_limit_continues_at_most_its_budget() -> None:
    limit = TraceparentTrust(Trust.LIMIT, per_second=5)
    started = time.monotonic()
    continued = sum(limit.continues() for _ in range(100))
    elapsed = time.monotonic() - started
    assert 5 <= continued <= 5 + int(elapsed * 5) + 1
    assert all(TraceparentTrust(Trust.TRUST).continues() for _ in range(100))
    assert not any(TraceparentTrust(Trust.IGNORE).continues() for _ in range(100))


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://h:port"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "authorization"}, "OTEL_EXPORTER_OTLP_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "OTEL_EXPORTER_OTLP_TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team"}, "OTEL_RESOURCE_ATTRIBUTES"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "many"}, "OTEL_BSP_MAX_QUEUE_SIZE"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "-1"}, "OTEL_BSP_SCHEDULE_DELAY"),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096"}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        ({"OTEL_PROPAGATORS": "tracecontext,b4"}, "OTEL_PROPAGATORS"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
    ],
)
def test_a_bad_otel_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(OtelSettingError) as raised:
        read_otel_environment(env)
    assert raised.value.variable == variable
    assert str(raised.value).startswith(f"invalid setting {variable}: ")


def test_otel_values_as_the_sdk_documents_them() -> None:
    assert read_otel_environment({}).exporters == ()  # no endpoint: nothing leaves the process
    assert read_otel_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}).exporters == ("otlp",)
    assert read_otel_environment({"OTEL_TRACES_EXPORTER": "otlp,console"}).exporters == ("otlp", "console")
    assert read_otel_environment({"OTEL_TRACES_EXPORTER": "none"}).exporters == ()
    grpc = read_otel_environment({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5"})
    assert (grpc.protocol, grpc.export_timeout) == ("grpc", 2.5)
    resource = read_otel_environment(
        {"OTEL_RESOURCE_ATTRIBUTES": "service.name=a,team=users%20core", "OTEL_SERVICE_NAME": "b"}
    ).resource
    assert resource == {"service.name": "b", "team": "users core"}
    queue = read_otel_environment({"OTEL_BSP_MAX_QUEUE_SIZE": "16", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8"})
    assert (queue.max_queue_size, queue.max_export_batch_size) == (16, 8)
    assert read_otel_environment({"OTEL_TRACES_SAMPLER": "always_off"}).sampler == "always_off"


def test_a_request_with_no_propagated_header_skips_extraction_and_one_with_any_is_read() -> None:
    plain = [(b"host", b"x"), (b"accept", b"*/*")]
    assert not server_span._carries_context(plain)
    assert server_span._carries_context(
        [*plain, (b"traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    )
    assert server_span._carries_context([*plain, (b"baggage", b"team=users")])  # the default propagators
    before = propagate.get_global_textmap()
    try:
        propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator()]))
        assert not server_span._carries_context([*plain, (b"baggage", b"team=users")])  # follows the setting
        assert server_span._carries_context([*plain, (b"tracestate", b"a=b")])
    finally:
        propagate.set_global_textmap(before)


def test_a_root_started_without_a_context_is_the_root_start_span_makes_decided_alike() -> None:
    tracer, _, collected, _ = pipeline(ratio=0.5)
    assert isinstance(tracer, OutcomeTracer)
    bound = ratio_bound(0.5)
    roots = [tracer.start_root_span(f"r{i}", SpanKind.SERVER, {"n": i}, None) for i in range(200)]
    for root in roots:
        ctx = root.get_span_context()
        assert root.is_root
        assert ctx.is_valid
        assert not ctx.is_remote
        assert ctx.trace_flags.sampled is in_ratio(ctx.trace_id, bound)
        with trace.use_span(root):
            tracer.start_span("child").end()
        root.end()
    expected = {f"r{i}" for i, r in enumerate(roots) if in_ratio(r.get_span_context().trace_id, bound)}
    assert {s.name for s in collected.spans if s.parent is None} == expected
    exported = {s.name: s for s in collected.spans if s.parent is None}
    assert all(s.kind is SpanKind.SERVER and s.attributes["n"] == int(s.name[1:]) for s in exported.values())
    assert sum(1 for s in collected.spans if s.name == "child") == len(expected)  # each under its root


def test_the_server_span_continues_a_trusted_caller_and_keeps_baggage_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import baggage

    tracer, _, _, _ = pipeline(ratio=0.0)
    monkeypatch.setattr(server_span, "_tracer", lambda: tracer)
    caller = b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"
    scope = {"headers": [(b"traceparent", caller)], "scheme": "http", "http_version": "1.1"}
    monkeypatch.setattr(server_span.tracing, "continues_incoming_trace", lambda: True)
    span, token = server_span.start(scope, "GET", "/x")
    assert isinstance(span, RecordedSpan)
    assert span.get_span_context().trace_id == int("a" * 32, 16)
    parent = span.readable().parent
    assert parent is not None
    assert parent.span_id == int("b" * 16, 16)  # the caller's span, continued (a local root of its trace)
    server_span.end(span, token, method="GET", route="/x", status=200, client_gone=False)
    monkeypatch.setattr(server_span.tracing, "continues_incoming_trace", lambda: False)
    span, token = server_span.start(scope, "GET", "/x")
    assert isinstance(span, RecordedSpan)
    assert span.get_span_context().trace_id != int("a" * 32, 16)
    assert span.readable().parent is None
    assert [link.context.span_id for link in span.readable().links] == [int("b" * 16, 16)]
    server_span.end(span, token, method="GET", route="/x", status=200, client_gone=False)
    span, token = server_span.start({"headers": [(b"baggage", b"team=users")]}, "GET", "/x")
    assert isinstance(span, RecordedSpan)
    assert span.readable().parent is None
    assert baggage.get_baggage("team") == "users"  # the request's context keeps what the caller sent
    assert trace.get_current_span() is span
    server_span.end(span, token, method="GET", route=None, status=200, client_gone=False)
    assert trace.get_current_span() is not span
