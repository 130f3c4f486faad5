"""The HTTP server metrics of a request: in flight while it runs, then its duration by method, route
template and status, with the trace id as exemplar when the request's trace is exported (`kept`), so
every exemplar opens a trace that exists. Each labelled child is looked up once (`Children`)."""

from opentelemetry.trace import Span

from user_service.infrastructure.telemetry.loop_metrics import UpDown
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


def started(method: str) -> UpDown:
    """The request counted in flight; pass what this returns to `finished`."""
    active = _active_of(method)
    active.inc()
    return active


def finished(
    active: UpDown,
    method: str,
    route: str,
    status: int,
    duration: float,
    *,
    client_gone: bool = False,
    kept: Span | None = None,
) -> None:
    """A request that ended; one whose client went away is counted apart, not as a success or an error.
    `kept`: the request's span, if its trace is exported (its trace id becomes the exemplar)."""
    active.dec()
    if client_gone:
        HTTP_DISCONNECTS.labels(method, route).inc()
        return
    exemplar = None
    if kept is not None:
        exemplar = {"trace_id": format(kept.get_span_context().trace_id, "032x")}
    _duration_of(method, route, status).observe(duration, exemplar)
