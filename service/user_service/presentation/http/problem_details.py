"""The one writer of RFC 9457 problem details: every error answer's body, whoever sends it.

The app's exception handlers (`problems.py`), the request middleware (a 413 before the body is read, a
500) and the HTTP server's own answers to requests it cannot hand to the app (`server.py`) all build
their bodies here, so the members and their order are the same everywhere; the headers that every answer
carries come from `headers.py`.
"""

from typing import Any

import orjson
from starlette.types import Send

from user_service.presentation.http.headers import SECURITY_HEADERS, every_answer

PROBLEM_JSON = "application/problem+json"
ABOUT_BLANK = "about:blank"
# Titles of the problems that are plain HTTP (type about:blank): the status's meaning.
HTTP_TITLES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    413: "Content too large",
    415: "Unsupported media type",
}


def body(
    status: int,
    detail: str,
    *,
    type: str = ABOUT_BLANK,
    title: str | None = None,
    instance: str | None = None,
    request_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    problem: dict[str, Any] = {
        "type": type,
        "title": title or HTTP_TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        problem["instance"] = instance
    if request_id:
        problem["request_id"] = request_id
    problem.update(extra)
    return problem


def render(problem: dict[str, Any]) -> bytes:
    return orjson.dumps(problem)


async def send_problem(send: Send, problem: dict[str, Any], headers: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006 - never mutated
    """Answer with `problem` on a raw ASGI `send` (the middleware adds the headers of every answer)."""
    content = render(problem)
    start = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": problem["status"], "headers": [*start, *headers]})
    await send({"type": "http.response.body", "body": content})


def http_response(problem: dict[str, Any], reason: str, request_id: str | None) -> bytes:
    """The whole HTTP/1.1 answer, for the server's own answers written straight to the socket; the
    connection closes after it."""
    content = render(problem)
    extra = every_answer(request_id) if request_id else SECURITY_HEADERS
    lines = [
        f"HTTP/1.1 {problem['status']} {reason}".encode(),
        b"content-type: " + PROBLEM_JSON.encode(),
        *(name + b": " + value for name, value in extra),
        b"content-length: " + str(len(content)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + content
