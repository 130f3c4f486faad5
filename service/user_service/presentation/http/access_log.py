"""One access line per request (`event: "request"`); probes and scrapes at debug, 5xx at error, and a
request whose client went away at info, with `client_disconnected: true` and whatever status it had."""

from opentelemetry.trace import Span
from starlette.types import Scope

from user_service.infrastructure.telemetry.logging import LineLogger

_line = LineLogger("user_service.access")


def log_request(
    scope: Scope,
    *,
    method: str,
    route: str,
    path: str,
    status: int,
    duration: float,
    quiet: bool,
    client_gone: bool = False,
    kept: bool | None = None,
    span: Span | None = None,
) -> None:
    """`kept`: the final decision on the request's trace (`trace_sampled`); None when it has no span.
    `span`: the request's server span, whose ids the line carries (otherwise the current span's)."""
    client = scope.get("client")
    event: dict[str, object] = {
        "method": method,
        "route": route,
        "path": path,
        "status": status,
        "duration_ms": round(duration * 1_000_000) / 1000,  # ms to the µs: round(x, 3) costs more
        "client": f"{client[0]}:{client[1]}" if client else None,
    }
    if client_gone:
        event["client_disconnected"] = True
    if kept is not None:
        event["trace_sampled"] = kept
    if span is not None:
        event["_span"] = span
    event["event"] = "request"
    _line.log("debug" if quiet else "info" if client_gone or status < 500 else "error", event)
