"""The request's one OpenTelemetry server span (HTTP semantic conventions), continuing an incoming
`traceparent` as far as TRACEPARENT_TRUST allows (otherwise a new trace, linked to the caller's); made
here rather than by FastAPI's built-in support (README: Traces)."""

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from starlette.types import Scope

from user_service.infrastructure.telemetry import tracing
from user_service.infrastructure.telemetry.sampling import OutcomeTracer


class _ScopeHeaders(Getter[list[tuple[bytes, bytes]]]):
    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.encode()
        return [value.decode("latin-1") for header, value in carrier if header == name] or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_SCOPE_HEADERS = _ScopeHeaders()


def _carries_context(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether any header the propagators read (OTEL_PROPAGATORS: `traceparent`, `baggage`, ...) is there:
    most requests carry none, and then there is nothing to extract."""
    fields = _fields()
    for name, _ in headers:  # noqa: SIM110 - a loop costs less than any() over a generator, every request
        if name in fields:
            return True
    return False


def _fields() -> frozenset[bytes]:
    global _propagator, _propagator_fields
    textmap = propagate.get_global_textmap()
    if textmap is not _propagator:
        _propagator, _propagator_fields = textmap, frozenset(f.lower().encode() for f in textmap.fields)
    return _propagator_fields


_propagator: object = None
_propagator_fields: frozenset[bytes] = frozenset()


def _tracer() -> Tracer:
    """The installed provider's tracer itself, rather than the API's proxy of it (one call less a span);
    looked up again when another provider is installed."""
    global _tracer_of, _tracer_itself
    provider = trace.get_tracer_provider()
    if provider is not _tracer_of:
        _tracer_of, _tracer_itself = provider, provider.get_tracer("user_service.http")
    return _tracer_itself


_tracer_of: object = None
_tracer_itself: Tracer = trace.NoOpTracer()


def start(scope: Scope, method: str, path: str) -> tuple[Span, object]:
    """The span, made current; end it with `end`, passing the token."""
    headers = scope["headers"]
    context = otel_context.Context()
    root = True  # no caller's span to continue: a new trace
    links: list[Link] = []
    if _carries_context(headers):
        context = propagate.extract(headers, getter=_SCOPE_HEADERS)
        caller = trace.get_current_span(context).get_span_context()
        if caller.is_valid:
            if tracing.continues_incoming_trace():
                root = False
            else:
                # A new trace of its own: the caller neither picks the trace id nor forces it to be kept.
                links.append(Link(caller, {"link.reason": "untrusted_traceparent"}))
                context = otel_context.Context()
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "url.path": path,
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if client := scope.get("client"):
        attributes["client.address"] = client[0]
    if server := scope.get("server"):
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    tracer = _tracer()
    span: Span
    if root and isinstance(tracer, OutcomeTracer):
        span = tracer.start_root_span(method, SpanKind.SERVER, attributes, links)
    else:
        span = tracer.start_span(
            method, context=context, kind=SpanKind.SERVER, attributes=attributes, links=links
        )
    return span, otel_context.attach(trace.set_span_in_context(span, context))


def kept(span: Span, *, status: int, duration: float, client_gone: bool) -> bool:
    """Whether the request's trace is exported: decided now, at its end (telemetry.sampling)."""
    return tracing.keep_request(span, failed=status >= 500 and not client_gone, duration=duration)


def end(
    span: Span,
    token: object,
    *,
    method: str,
    route: str | None,
    status: int,
    client_gone: bool,
    kept: bool = True,
) -> None:
    """End the span with the request's outcome. `kept` is the decision `kept` made on its trace: the span
    of a dropped trace ends without its last attributes (name, route, status), which nothing reads."""
    if not kept:
        span.end()
        otel_context.detach(token)  # type: ignore[arg-type]
        return
    if route is not None:
        span.update_name(f"{method} {route}")
        span.set_attributes({"http.route": route, "http.response.status_code": status})
    else:
        span.set_attribute("http.response.status_code", status)
    if client_gone:
        span.set_attribute("error.type", "client_disconnected")  # the client's doing: no error status
    elif status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))
    span.end()
    otel_context.detach(token)  # type: ignore[arg-type]
