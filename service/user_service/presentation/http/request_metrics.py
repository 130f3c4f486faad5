"""The HTTP server metrics of a request: in flight while it runs, then its duration by method, route
template and status, with the trace id as exemplar when the request's trace is exported (`kept`), so
every exemplar opens a trace that exists. Each labelled child is looked up once (`Children`)."""

from opentelemetry import trace

from user_service.infrastructure.telemetry.metrics import (
    HTTP_ACTIVE,
    HTTP_DISCONNECTS,
    HTTP_DURATION,
    Children,
)

KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})


def method_label(method: str) -> str:
    """The method, or `_OTHER` for a method no standard names (bounded cardinality)."""
    return method if method in KNOWN_METHODS else "_OTHER"


_active_of = Children(HTTP_ACTIVE)
_duration_of = Children(HTTP_DURATION)


def started(method: str) -> None:
    _active_of(method).inc()


def finished(
    method: str, route: str, status: int, duration: float, *, client_gone: bool = False, kept: bool = False
) -> None:
    """A request that ended; one whose client went away is counted apart, not as a success or an error."""
    _active_of(method).dec()
    if client_gone:
        HTTP_DISCONNECTS.labels(method, route).inc()
        return
    exemplar = None
    if kept:
        exemplar = {"trace_id": format(trace.get_current_span().get_span_context().trace_id, "032x")}
    _duration_of(method, route, status).observe(duration, exemplar)
