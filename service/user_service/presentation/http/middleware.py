"""The outermost layer of every request, composed of one job per module:

- `paths.py`: the trailing slash folded;
- `headers.py`: the request id and the security headers on every answer;
- `body_limit.py`: the 64 KiB body limit;
- `server_span.py`, `request_metrics.py`, `access_log.py`: the server span, the HTTP metrics, the access
  line (probes and scrapes get no span and no metrics, and their access line is at debug);
- here: the one place an unexpected error is logged (with its traceback, once) and becomes a 500.

It is one ASGI callable rather than a stack of them: a stack wraps `send` and builds a frame per layer
for every request, which the service's throughput pays for.
"""

import time
from typing import Any

import structlog
from opentelemetry.trace import Span
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from user_service.infrastructure.telemetry.metrics import UNMATCHED_ROUTE
from user_service.presentation.http import access_log, problem_details, request_metrics, server_span
from user_service.presentation.http.body_limit import (
    MAX_BODY_SIZE,
    TOO_LARGE_DETAIL,
    declared_length,
    limited,
)
from user_service.presentation.http.headers import every_answer, request_id
from user_service.presentation.http.paths import fold_trailing_slash
from user_service.presentation.http.problems import INTERNAL

error_log = structlog.get_logger("user_service.errors")

# Probes and scrapes: no span, no metrics, access lines at debug level.
QUIET_PATHS = frozenset({"/healthcheck", "/healthcheck/ready", "/metrics"})
UNEXPECTED_DETAIL = "An unexpected error occurred; the request id identifies it in the service's logs."


class RequestMiddleware:
    def __init__(self, app: ASGIApp, telemetry: bool = True, max_body_size: int = MAX_BODY_SIZE) -> None:
        self.app = app
        self.telemetry = telemetry
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        fold_trailing_slash(scope)
        rid = scope["request_id"] = request_id(scope)
        extra_headers = every_answer(rid)
        response: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["started"] = True
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        method = request_metrics.method_label(scope["method"])
        quiet = scope["path"] in QUIET_PATHS
        measured = self.telemetry and not quiet
        tokens = structlog.contextvars.bind_contextvars(request_id=rid)
        span: Span | None = None
        span_token: object = None
        if measured:
            request_metrics.started(method)
            span, span_token = server_span.start(scope, method, path)
        start = time.perf_counter()
        try:
            declared = declared_length(scope)
            if declared is not None and declared > self.max_body_size:
                # Refused before reading a byte; a body without a length is cut off as it arrives.
                too_large = problem_details.body(
                    413, TOO_LARGE_DETAIL, instance=scope["path"], request_id=rid
                )
                await problem_details.send_problem(send_with_headers, too_large)
            else:
                await self.app(scope, limited(receive, self.max_body_size), send_with_headers)
        except Exception as exc:
            error_log.error("unexpected error", exc_info=exc)
            if span is not None:
                span.record_exception(exc)
            if not response["started"]:
                unexpected = problem_details.body(
                    500,
                    UNEXPECTED_DETAIL,
                    type=INTERNAL.uri,
                    title=INTERNAL.title,
                    instance=scope["path"],
                    request_id=rid,
                )
                await problem_details.send_problem(send_with_headers, unexpected)
            response["status"] = 500
        finally:
            # While the span is still current, so the exemplar and the access line carry its ids.
            duration = time.perf_counter() - start
            status = response["status"]
            route = getattr(scope.get("route"), "path", None)
            if measured:
                request_metrics.finished(method, route or UNMATCHED_ROUTE, status, duration)
            if self.telemetry:
                access_log.log_request(
                    scope,
                    method=method,
                    route=route or UNMATCHED_ROUTE,
                    path=path,
                    status=status,
                    duration=duration,
                    quiet=quiet,
                )
            if span is not None:
                server_span.end(span, span_token, method=method, route=route, status=status)
            structlog.contextvars.reset_contextvars(**tokens)
