"""The request body's size limit (64 KiB): refused before a byte is read when the declared length is
over it, cut off as it arrives when there is no declared length (chunked)."""

from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope

MAX_BODY_SIZE = 64 * 1024
TOO_LARGE_DETAIL = "The request body is larger than the limit of 64 KiB."


class BodyTooLarge(HTTPException):
    """Raised from `receive` inside the route; answered as a 413 problem by the exception handlers."""

    def __init__(self) -> None:
        super().__init__(413)


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def limited(receive: Receive, max_size: int) -> Receive:
    """`receive` that stops a body once it passes `max_size`."""
    received = 0

    async def receive_within_limit() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_size:
                raise BodyTooLarge
        return message

    return receive_within_limit
