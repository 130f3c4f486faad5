"""uvicorn's HTTP protocol, hardened against slow and malformed clients.

- A client must finish a request's headers within HTTP_HEADER_TIMEOUT seconds of connecting (or of
  starting the request): a connection that sends nothing, or dribbles its headers (slowloris), is closed
  instead of being held forever. Idle keep-alive connections are closed by uvicorn's own timeout.
- The server's own answer to a request it cannot parse is a problem details 400 with the security
  headers, like every answer of the application.
"""

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from user_service.presentation.http import problem_details


class HardenedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = 10.0  # HTTP_HEADER_TIMEOUT, set by `configure` in each worker
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:
            self._start_header_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._cancel_header_deadline()
        problem = problem_details.body(400, f"{msg.rstrip('.')}.")
        self.transport.write(problem_details.http_response(problem, "Bad Request", None))
        self.transport.close()

    @classmethod
    def configure(cls, *, header_timeout: float) -> None:
        cls.header_timeout = header_timeout

    def _start_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
