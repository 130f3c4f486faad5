"""The outermost layer of every request, composed of one job per module:

- `paths.py`: the trailing slash folded; `request_rules.py`: Host rules and encoded slashes refused;
- `headers.py`: the request id and the security headers on every answer;
- `body_limit.py`: the 64 KiB body limit;
- `server_span.py`, `request_metrics.py`, `access_log.py`: the server span, the HTTP metrics, the access
  line (probes and scrapes get no span and no metrics, and their access line is at debug);
- `websocket.py`: WebSocket handshakes refused with a problem;
- here: HEAD answered as GET without the body; a client that went away told from a failure; a request
  cut off by the shutdown deadline answered 503; and the one place an unexpected error is logged (with
  its traceback, once) and becomes a 500.

It is one ASGI callable rather than a stack of them: a stack wraps `send` and builds a frame per layer
for every request, which the service's throughput pays for.
"""

import asyncio
import time
from typing import Any

import structlog
from opentelemetry.trace import Span
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from user_service.infrastructure.telemetry.logging import bind_request, unbind_request
from user_service.infrastructure.telemetry.loop_metrics import UpDown
from user_service.infrastructure.telemetry.metrics import UNMATCHED_ROUTE
from user_service.presentation.http import (
    access_log,
    problem_details,
    request_metrics,
    request_rules,
    server_span,
    websocket,
)
from user_service.presentation.http.body_limit import (
    MAX_BODY_SIZE,
    TOO_LARGE_DETAIL,
    declared_length,
    limited,
)
from user_service.presentation.http.headers import every_answer, request_id
from user_service.presentation.http.paths import fold_trailing_slash
from user_service.presentation.http.problems import INTERNAL, UNAVAILABLE

error_log = structlog.get_logger("user_service.errors")

# Probes and scrapes: no span, no metrics, access lines at debug level.
QUIET_PATHS = frozenset({"/healthcheck", "/healthcheck/ready", "/metrics"})
UNEXPECTED_DETAIL = "An unexpected error occurred; the request id identifies it in the service's logs."
SHUTDOWN_DETAIL = "The service is shutting down and could not finish this request in time; retry it."


class ClientGone(Exception):
    """The connection closed under the answer: the client left; nothing failed on this side."""


def _transport_closed(exc: Exception) -> bool:
    return isinstance(exc, OSError) or (isinstance(exc, RuntimeError) and "closed" in str(exc))


class RequestMiddleware:
    def __init__(self, app: ASGIApp, telemetry: bool = True, max_body_size: int = MAX_BODY_SIZE) -> None:
        self.app = app
        self.telemetry = telemetry
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: PLR0912, PLR0915
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await websocket.refuse(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        path = scope["path"]
        fold_trailing_slash(scope)
        instance = scope["path"]
        rid = scope["request_id"] = request_id(scope)
        extra_headers = every_answer(rid)
        head = scope["method"] == "HEAD"
        # HEAD is answered as GET, without the body (RFC 9110 §9.3.2): the routes declare GET only.
        app_scope = {**scope, "method": "GET"} if head else scope
        state: dict[str, Any] = {"status": 500, "started": False, "complete": False, "gone": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            elif head and message.get("body"):
                message = {**message, "body": b""}
            try:
                await send(message)
            except (OSError, RuntimeError) as exc:
                if not _transport_closed(exc):
                    raise
                state["gone"] = True
                raise ClientGone from exc
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                state["complete"] = True

        within_limit = limited(receive, self.max_body_size)

        async def receive_watching() -> Message:
            message = await within_limit()
            if message["type"] == "http.disconnect" and not state["complete"]:
                state["gone"] = True
            return message

        method = request_metrics.method_label(scope["method"])
        quiet = scope["path"] in QUIET_PATHS
        measured = self.telemetry and not quiet
        bound = bind_request(request_id=rid)
        span: Span | None = None
        span_token: object = None
        active: UpDown | None = None
        if measured:
            active = request_metrics.started(method)
            span, span_token = server_span.start(scope, method, path)
        start = time.perf_counter()
        try:
            declared = declared_length(scope)
            if (refused := request_rules.refusal(scope)) is not None:
                status, detail = refused
                await problem_details.send_problem(
                    send_with_headers, problem_details.body(status, detail, instance=instance, request_id=rid)
                )
            elif declared is not None and declared > self.max_body_size:
                # Refused before reading a byte; a body without a length is cut off as it arrives.
                too_large = problem_details.body(
                    413, TOO_LARGE_DETAIL, instance=scope["path"], request_id=rid
                )
                await problem_details.send_problem(send_with_headers, too_large)
            else:
                await self.app(app_scope, receive_watching, send_with_headers)
        except ClientGone:
            pass
        except asyncio.CancelledError:
            # The shutdown deadline passed with this request still running: its transaction was rolled
            # back on the way out; the client hears why and may retry elsewhere. The cancellation has done
            # its work, so the request ends here, its answer sent.
            error_log.warning("request cut off by the shutdown deadline", path=instance)
            if not state["started"] and not state["gone"]:
                unavailable = problem_details.body(
                    503,
                    SHUTDOWN_DETAIL,
                    type=UNAVAILABLE.uri,
                    title=UNAVAILABLE.title,
                    instance=path,
                    request_id=rid,
                )
                await problem_details.send_problem(send_with_headers, unavailable, [(b"retry-after", b"1")])
            state["status"] = 503
        except Exception as exc:
            if state["gone"]:
                pass  # what failed was reading or answering a client that had left
            else:
                error_log.error("unexpected error", exc_info=exc)
                if span is not None:
                    span.record_exception(exc)
                if not state["started"]:
                    unexpected = problem_details.body(
                        500,
                        UNEXPECTED_DETAIL,
                        type=INTERNAL.uri,
                        title=INTERNAL.title,
                        instance=instance,
                        request_id=rid,
                    )
                    await problem_details.send_problem(send_with_headers, unexpected)
                state["status"] = 500
        finally:
            # While the span is still current, so the exemplar and the access line carry its ids.
            duration = time.perf_counter() - start
            status, gone = state["status"], state["gone"]
            route = getattr(app_scope.get("route"), "path", None)
            kept = None
            if span is not None:
                kept = server_span.kept(span, status=status, duration=duration, client_gone=gone)
            if active is not None:
                request_metrics.finished(
                    active,
                    method,
                    route or UNMATCHED_ROUTE,
                    status,
                    duration,
                    client_gone=gone,
                    kept=span if kept else None,
                )
            if self.telemetry:
                access_log.log_request(
                    scope,
                    method=method,
                    route=route or UNMATCHED_ROUTE,
                    path=path,
                    status=status,
                    duration=duration,
                    quiet=quiet,
                    client_gone=gone,
                    kept=kept,
                    span=span,
                )
            if span is not None:
                server_span.end(
                    span,
                    span_token,
                    method=method,
                    route=route,
                    status=status,
                    client_gone=gone,
                    kept=bool(kept),
                )
            unbind_request(bound)
