"""One access line per request (`event: "request"`); probes and scrapes at debug, 5xx at error."""

import structlog
from starlette.types import Scope

_log = structlog.get_logger("user_service.access")


def log_request(
    scope: Scope, *, method: str, route: str, path: str, status: int, duration: float, quiet: bool
) -> None:
    client = scope.get("client")
    (_log.debug if quiet else _log.error if status >= 500 else _log.info)(
        "request",
        method=method,
        route=route,
        path=path,
        status=status,
        duration_ms=round(duration * 1000, 3),
        client=f"{client[0]}:{client[1]}" if client else None,
    )
