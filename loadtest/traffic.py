"""Requests as the tests and tools see them: every request's start, duration and answer (or the client-side
error), and whether the answer is a problem.

`send` goes through an httpx client. `send_bare` says the same in a few lines of asyncio over a connection
of its own, for bursts of hundreds of requests at once: httpx spends about a millisecond of CPU on each
(more on a busy machine), which in one event loop delays every answer of the burst by the whole of it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from loadtest.problem import problem_errors


@dataclass(frozen=True)
class Outcome:
    """One request: when it started (monotonic), how long it took, and what came back (or the error)."""

    method: str
    path: str
    started: float
    elapsed: float
    status: int | None
    content_type: str
    body: bytes
    headers: dict[str, str]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        return orjson.loads(self.body)

    def problem_errors(self, status: int) -> list[str]:
        """Why this answer is not an RFC 9457 problem with `status` (empty when it is one)."""
        return problem_errors(self.status or 0, self.content_type, self.body, status)

    @classmethod
    def failed(cls, method: str, path: str, started: float, error: str) -> Outcome:
        """A request that got no answer: the client's `error`."""
        return cls(method, path, started, time.monotonic() - started, None, "", b"", {}, error)

    def __str__(self) -> str:
        answer = self.error or f"{self.status} {self.content_type} {self.body[:300]!r}"
        return f"{self.method} {self.path} after {self.elapsed:.3f} s: {answer}"


async def send(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    json: Any = None,
    timeout: float = 10,  # noqa: ASYNC109 - httpx's timeout of this request
) -> Outcome:
    """`method path` (with `json` as the body) through `client`; what came back, or the client's error."""
    started = time.monotonic()
    try:
        response = await client.request(method, path, json=json, timeout=timeout)
    except httpx.HTTPError as exc:
        return Outcome.failed(method, path, started, type(exc).__name__)
    elapsed, content_type = time.monotonic() - started, response.headers.get("content-type", "")
    headers = dict(response.headers)
    return Outcome(
        method, path, started, elapsed, response.status_code, content_type, response.content, headers
    )


async def send_bare(
    url: str,
    method: str,
    path: str,
    json: Any = None,
    timeout: float = 10,  # noqa: ASYNC109 - this request's, connecting included
) -> Outcome:
    """`method path` to the server at `url` (http://host:port) on a connection of its own, closed after."""
    parts = urlsplit(url)
    body = b"" if json is None else orjson.dumps(json)
    kind = "" if json is None else "Content-Type: application/json\r\n"
    head = f"{method} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n{kind}"
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            try:
                writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                answer = await reader.read()  # to the end: the server closes after its answer
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        return Outcome.failed(method, path, started, type(exc).__name__)
    raw_head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    if not status_line.startswith("HTTP/1.1 ") or "content-length" not in headers:
        return Outcome.failed(method, path, started, f"not a plain HTTP/1.1 answer: {answer[:100]!r}")
    elapsed, status = time.monotonic() - started, int(status_line.split()[1])
    return Outcome(method, path, started, elapsed, status, headers.get("content-type", ""), content, headers)
