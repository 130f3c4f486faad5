"""The outermost layer of every request: request id, security headers, the server span, the access log,
HTTP metrics, and the one place an unexpected error is logged (with its traceback, once) and becomes a 500."""

import os
import re
import time
from typing import Any

import orjson
import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from user_service.infrastructure.telemetry.metrics import HTTP_ACTIVE, HTTP_DURATION, UNMATCHED_ROUTE
from user_service.presentation.http.problems import INTERNAL

access_log = structlog.get_logger("user_service.access")
error_log = structlog.get_logger("user_service.errors")

_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
# Probes and scrapes: no metrics, access lines at debug level.
QUIET_PATHS = frozenset({"/healthcheck", "/healthcheck/ready", "/metrics"})


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _SANE_REQUEST_ID.fullmatch(value):
                return str(value.decode())
            break
    return os.urandom(16).hex()


class BodyTooLarge(HTTPException):
    """Raised from `receive` inside the route; answered as a 413 problem by the exception handlers."""

    def __init__(self) -> None:
        super().__init__(413)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestMiddleware:
    def __init__(self, app: ASGIApp, telemetry: bool = True, max_body_size: int = 64 * 1024) -> None:
        self.app = app
        self.telemetry = telemetry
        self.max_body_size = max_body_size

    def _limited(self, receive: Receive) -> Receive:
        """`receive` that stops a body without a declared length once it passes the limit."""
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_size:
                    raise BodyTooLarge
            return message

        return receive_within_limit

    def _record(
        self,
        scope: Scope,
        *,
        method: str,
        path: str,
        quiet: bool,
        duration: float,
        status: int,
        span: Span | None,
        context_token: object,
    ) -> None:
        """Metrics, the access line and the end of the server span, while the span is still current."""
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED_ROUTE
        if self.telemetry and not quiet:
            HTTP_ACTIVE.labels(method).dec()
            ctx = trace.get_current_span().get_span_context()
            exemplar = {"trace_id": format(ctx.trace_id, "032x")} if ctx.trace_flags.sampled else None
            HTTP_DURATION.labels(method, template, str(status)).observe(duration, exemplar)
        if self.telemetry:
            client = scope.get("client")
            (access_log.debug if quiet else access_log.error if status >= 500 else access_log.info)(
                "request",
                method=method,
                route=template,
                path=path,
                status=status,
                duration_ms=round(duration * 1000, 3),
                client=f"{client[0]}:{client[1]}" if client else None,
            )
        if span is not None:
            if route is not None:
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            otel_context.detach(context_token)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # Every path answers with and without a trailing slash, never with a redirect.
            scope["path"] = path.rstrip("/") or "/"
        request_id = _request_id(scope)
        scope["request_id"] = request_id
        extra_headers = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
        response: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["started"] = True
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        method = scope["method"] if scope["method"] in KNOWN_METHODS else "_OTHER"
        quiet = scope["path"] in QUIET_PATHS
        measured = self.telemetry and not quiet
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        span, context_token = None, None
        if measured:
            HTTP_ACTIVE.labels(method).inc()
            span, context_token = _start_server_span(scope, method, path)
        start = time.perf_counter()
        try:
            declared = _declared_length(scope)
            if declared is not None and declared > self.max_body_size:
                # Refused before reading a byte; a body without a length is cut off by FastAPI's limit.
                await _problem(scope, send_with_headers, request_id, TOO_LARGE)
            else:
                await self.app(scope, self._limited(receive), send_with_headers)
        except Exception as exc:
            error_log.error("unexpected error", exc_info=exc)
            if span is not None:
                span.record_exception(exc)
            if not response["started"]:
                await _problem(scope, send_with_headers, request_id, UNEXPECTED)
            response["status"] = 500
        finally:
            self._record(
                scope,
                method=method,
                path=path,
                quiet=quiet,
                duration=time.perf_counter() - start,
                status=response["status"],
                span=span,
                context_token=context_token,
            )
            structlog.contextvars.reset_contextvars(**tokens)


KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
_tracer = trace.get_tracer("user_service.http")


class _ScopeHeaders(Getter[list[tuple[bytes, bytes]]]):
    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.encode()
        return [value.decode("latin-1") for header, value in carrier if header == name] or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_SCOPE_HEADERS = _ScopeHeaders()


def _start_server_span(scope: Scope, method: str, path: str) -> tuple[Span, object]:
    """The request's one server span, continuing an incoming `traceparent` (HTTP semantic conventions)."""
    parent = propagate.extract(scope["headers"], getter=_SCOPE_HEADERS)
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
    span = _tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
    return span, otel_context.attach(trace.set_span_in_context(span, parent))


TOO_LARGE = (413, "about:blank", "Content too large", "The request body is larger than the limit of 64 KiB.")
UNEXPECTED = (
    500,
    INTERNAL.uri,
    INTERNAL.title,
    "An unexpected error occurred; the request id identifies it in the service's logs.",
)


async def _problem(scope: Scope, send: Send, request_id: str, kind: tuple[int, str, str, str]) -> None:
    status, type_, title, detail = kind
    body = orjson.dumps(
        {
            "type": type_,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope["path"],
            "request_id": request_id,
        }
    )
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_LIVE_BODY = b'{"status":"ok"}'
_LIVE_PATHS = frozenset({"/healthcheck", "/healthcheck/"})
_LIVE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_LIVE_BODY)).encode()),
    *SECURITY_HEADERS,
]


async def answer_liveness(scope: Scope, send: Send) -> bool:
    """Answer `GET /healthcheck` before any framework work: liveness touches nothing, so it costs nothing.

    The route stays declared in FastAPI for the OpenAPI document; this answers first, with the same body
    and headers (request id included), and no trace, metric or access line, as for every probe.
    """
    if scope["type"] != "http" or scope["path"] not in _LIVE_PATHS or scope["method"] not in ("GET", "HEAD"):
        return False
    headers = [*_LIVE_HEADERS, (b"x-request-id", _request_id(scope).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else _LIVE_BODY})
    return True
