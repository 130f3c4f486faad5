"""Requests as the tests and tools see them: every request's start, duration and answer (or the client-side
error), and whether the answer is a problem."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

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
        return Outcome(
            method, path, started, time.monotonic() - started, None, "", b"", {}, f"{type(exc).__name__}"
        )
    return Outcome(
        method,
        path,
        started,
        time.monotonic() - started,
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
        dict(response.headers),
    )
