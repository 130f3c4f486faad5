"""Read-your-writes across instances: the `X-Consistency-Token` a write answers with and a read echoes.

A write's 2xx carries the primary's WAL position after its commit; a read that sends it back, to this
instance or any other behind the load balancer, sees that write or a later state: the replica serves it
only once it has replayed past the token, else the primary does (infrastructure.db.replica). Without a
token a read may be served by the replica, at most 1 s behind. Without a replica no token is sent.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Annotated, Any

from fastapi import Header

from user_service.infrastructure.db.replica import committed_at, format_lsn, parse_lsn, reading_after

HEADER = "X-Consistency-Token"
PATTERN = r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$"
_ABOUT = (
    "Opaque: the position of the write on the primary. Send the latest one received back on reads "
    "(`X-Consistency-Token` request header) to see that write or a later state from any instance."
)

# A read route's parameter: the token of the client's latest write, if any.
Token = Annotated[
    str | None,
    Header(
        alias=HEADER,
        pattern=PATTERN,
        description="The `X-Consistency-Token` of the client's latest write: the read sees that write or "
        "a later state. Without it the read may be up to 1 s behind the writes.",
    ),
]

# The header in a write route's documented response (openapi.answer's keyword form of its name).
WRITTEN: dict[str, dict[str, Any]] = {
    HEADER.replace("-", "_"): {
        "description": _ABOUT,
        "required": False,
        "schema": {"type": "string", "pattern": PATTERN},
        "example": "0/3000148",
    }
}


def reads_after(token: str | None) -> AbstractContextManager[None]:
    """Reads inside see every write up to the client's token; without one, as they are (no request sets
    a position but through this, so there is none to clear)."""
    return _AS_THEY_ARE if token is None else reading_after(parse_lsn(token))


_AS_THEY_ARE = nullcontext()


@contextmanager
def write_token() -> Iterator[dict[str, str]]:
    """Headers for a write's response: filled, once the body is done, with the commit's token."""
    reset = committed_at.set(None)
    headers: dict[str, str] = {}
    try:
        yield headers
        if (position := committed_at.get()) is not None:
            headers[HEADER] = format_lsn(position)
    finally:
        committed_at.reset(reset)
