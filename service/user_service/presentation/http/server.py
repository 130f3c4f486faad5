"""uvicorn's HTTP protocol, hardened against slow, oversized and malformed clients.

- Headers: a client must finish a request's headers within HTTP_HEADER_TIMEOUT seconds of connecting (or
  of starting the request), or the connection is closed (slowloris). The request line and headers may
  take HTTP_MAX_HEADER_BYTES (64 KiB) and HTTP_MAX_HEADERS (100) fields; past either the answer is a 431
  and the connection is closed, before the rest is read or kept.
- Body: once a request's headers are in, its body must arrive within HTTP_BODY_TIMEOUT seconds and,
  after the first seconds, at HTTP_BODY_MIN_RATE bytes a second on average; a body that trickles is
  answered 408 (or, when the answer has begun, cut) and its connection freed.
- The server's own answers (400, 408, 431) are problem details with the request id and the headers of
  every answer, written by `problem_details.py` like the application's. Each is counted by reason.
- WebSocket upgrades are left to the application, which answers them with a problem (`middleware.py`).
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httptools
import structlog
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from user_service.infrastructure.telemetry.metrics import HTTP_REFUSED
from user_service.presentation.http import problem_details
from user_service.presentation.http.headers import request_id_of

log = structlog.get_logger("user_service.server")


@dataclass(frozen=True, slots=True)
class ServerLimits:
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    body_timeout: float = 30.0
    body_min_rate: float = 1024.0  # bytes a second, on average, once the grace is over
    body_grace: float = 5.0


class _Refused(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


_PHRASES = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


class HardenedHttpToolsProtocol(HttpToolsProtocol):
    limits = ServerLimits()  # set by `configure` in each worker, from its Settings
    _header_deadline: asyncio.TimerHandle | None = None
    _body_check: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _header_count = 0
    _in_head = True
    _body_started = 0.0
    _body_received = 0

    @classmethod
    def configure(cls, limits: ServerLimits) -> None:
        cls.limits = limits

    # Connection and parser events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        self._stop_body_check()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # Counted as it arrives, so one endless header line cannot grow the parser's buffer unbounded.
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(431, "header_too_large", self._too_large_detail())
                return
        elif self._body_check is not None:
            self._body_received += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refused):
                refused = exc.__context__
                self._refuse(refused.status, refused.reason, refused.detail)
            else:
                self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._header_count = True, 0
        if self._header_deadline is None:
            self._start_header_deadline()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _Refused(
                431, "too_many_headers", f"A request may have {self.limits.max_headers} header fields."
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.scope is self.scope:
            self.cycle.send = _raising_once_closed(self.cycle)  # type: ignore[method-assign,assignment]
        if self._expects_body():
            self._body_started, self._body_received = time.monotonic(), 0
            self._body_check = self.loop.call_later(1.0, self._check_body)

    def on_message_complete(self) -> None:
        self._stop_body_check()
        self._in_head, self._head_bytes = True, 0  # what follows on this connection is the next request
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_request", f"{msg.rstrip('.')}.")

    # Answers of the server's own

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        """Answer with a problem when no answer has begun, then close the connection."""
        self._cancel_header_deadline()
        self._stop_body_check()
        HTTP_REFUSED.labels(reason).inc()
        log.info("request refused", reason=reason, status=status, client=_address(self.client))
        cycle = self.cycle
        if not self.transport.is_closing() and (
            cycle is None or cycle.response_complete or not cycle.response_started
        ):
            problem = problem_details.body(status, detail, request_id=request_id_of(self.headers or []))
            self.transport.write(
                problem_details.http_response(problem, _PHRASES[status], problem["request_id"])
            )
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application's receive() and send() see a client that left
            cycle.message_event.set()
        self.transport.close()

    def _too_large_detail(self) -> str:
        return f"The request line and headers may take {self.limits.max_header_bytes} bytes."

    # Deadlines

    def _start_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.limits.header_timeout, self._headers_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            HTTP_REFUSED.labels("header_timeout").inc()
            self.transport.close()

    def _expects_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"", b"0")
            if name == b"transfer-encoding":
                return True
        return False

    def _check_body(self) -> None:
        self._body_check = None
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.more_body or self.transport.is_closing():
            return
        elapsed = time.monotonic() - self._body_started
        if elapsed >= self.limits.body_timeout:
            self._refuse(
                408, "body_timeout", f"The request body took longer than {self.limits.body_timeout:g} s."
            )
        elif elapsed >= self.limits.body_grace and self._body_received < self.limits.body_min_rate * elapsed:
            rate = round(self.limits.body_min_rate)
            self._refuse(408, "body_too_slow", f"The request body arrived slower than {rate} bytes a second.")
        else:
            self._body_check = self.loop.call_later(1.0, self._check_body)

    def _stop_body_check(self) -> None:
        if self._body_check is not None:
            self._body_check.cancel()
            self._body_check = None


class ConnectionClosed(OSError):
    """`send` on a connection that is closed or closing: the client will not read the answer."""


def _raising_once_closed(cycle: RequestResponseCycle) -> Callable[[ASGISendEvent], Awaitable[None]]:
    """The cycle's `send`, raising an OSError once the connection is closed or closing, as the ASGI spec
    asks of a server, instead of returning as if the answer had gone out (and then logging at error that
    the application left it unfinished): the application learns the client left, and says so itself."""
    send = cycle.send

    async def send_unless_closed(message: ASGISendEvent) -> None:
        if cycle.disconnected or cycle.transport.is_closing():
            cycle.disconnected = True
            raise ConnectionClosed("the client's connection is closed")
        try:
            await send(message)
        except (OSError, RuntimeError) as exc:
            # uvloop's transport refuses a write once the peer reset it, before it says it is closing.
            if isinstance(exc, RuntimeError) and "closed" not in str(exc):
                raise
            cycle.disconnected = True
            raise ConnectionClosed("the client's connection is closed") from exc

    return send_unless_closed


def _address(client: tuple[str, int] | None) -> str | None:
    return f"{client[0]}:{client[1]}" if client else None
