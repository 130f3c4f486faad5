"""The HTTP server metrics of a request: in flight while it runs, then its duration by method, route
template and status, with the trace id as exemplar when the request's trace is exported (`kept`), so
every exemplar opens a trace that exists.

Each labelled child is looked up once (the labels are bounded: known methods, route templates, status
codes), not per request: `labels()` validates and locks every time."""

from opentelemetry import trace
from prometheus_client.metrics import Gauge, Histogram

from user_service.infrastructure.telemetry.metrics import HTTP_ACTIVE, HTTP_DISCONNECTS, HTTP_DURATION

KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})


def method_label(method: str) -> str:
    """The method, or `_OTHER` for a method no standard names (bounded cardinality)."""
    return method if method in KNOWN_METHODS else "_OTHER"


_active: dict[str, Gauge] = {}
_durations: dict[tuple[str, str, int], Histogram] = {}


def _active_of(method: str) -> Gauge:
    child = _active.get(method)
    if child is None:
        child = _active[method] = HTTP_ACTIVE.labels(method)
    return child


def _duration_of(method: str, route: str, status: int) -> Histogram:
    child = _durations.get((method, route, status))
    if child is None:
        child = _durations[(method, route, status)] = HTTP_DURATION.labels(method, route, str(status))
    return child


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
