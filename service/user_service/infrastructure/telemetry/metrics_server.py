"""`/metrics` and `/healthcheck` of a process that serves no API (`user-service relay`), on a port of its own.

A few lines of HTTP/1.1 on the process's own event loop, one request per connection: a liveness probe
that gets its answer says the loop runs, which a thread serving the metrics would not. Anything else
than a GET (or HEAD) of those two paths is a 404 or a 405.
"""

import asyncio
import contextlib

import structlog

from user_service.infrastructure.telemetry import metrics

log = structlog.get_logger(__name__)
_HEADER_LIMIT = 16 * 1024
_READ_TIMEOUT = 10.0


class MetricsServer:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._answer, self.host, self.port, limit=_HEADER_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]  # the kernel's pick when given 0
        log.info("metrics endpoint listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            status, content_type, body, head_only = _respond(head)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + (b"" if head_only else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _respond(head: bytes) -> tuple[str, str, bytes, bool]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return "400 Bad Request", "text/plain", b"bad request\n", False
    method, target, _ = parts
    path = target.split("?", 1)[0]
    if path not in ("/metrics", "/healthcheck"):
        return "404 Not Found", "text/plain", b"not found\n", False
    if method not in ("GET", "HEAD"):
        return "405 Method Not Allowed", "text/plain", b"method not allowed\n", False
    if path == "/healthcheck":
        return "200 OK", "application/json", b'{"status":"ok"}', method == "HEAD"
    accept = next(
        (line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("accept:")), None
    )
    body, content_type = metrics.exposition(accept)
    return "200 OK", content_type, body, method == "HEAD"
