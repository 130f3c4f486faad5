"""One access line per request (`event: "request"`); probes and scrapes at debug, 5xx at error, and a
request whose client went away at info, with `client_disconnected: true` and whatever status it had."""

import structlog
from starlette.types import Scope

_log = structlog.get_logger("user_service.access")


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
) -> None:
    """`kept`: the final decision on the request's trace (`trace_sampled`); None when it has no span."""
    client = scope.get("client")
    level = _log.debug if quiet else _log.info if client_gone or status < 500 else _log.error
    fields: dict[str, bool] = {"client_disconnected": True} if client_gone else {}
    if kept is not None:
        fields["trace_sampled"] = kept
    level(
        "request",
        method=method,
        route=route,
        path=path,
        status=status,
        duration_ms=round(duration * 1000, 3),
        client=f"{client[0]}:{client[1]}" if client else None,
        **fields,
    )
