"""The headers every answer carries, the server's own answers included: the security headers and the
request id. One list, used by the request middleware and by the HTTP server."""

import random
import re

from starlette.types import Scope

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
REQUEST_ID = b"x-request-id"
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's `X-Request-ID` when it is sane (1–128 of `A-Za-z0-9._:-`), else a new random one."""
    for name, value in headers:
        if name == REQUEST_ID:
            if _SANE_REQUEST_ID.fullmatch(value):
                return value.decode()
            break
    # An identifier, not a secret: the process's Mersenne Twister (seeded from the OS, and again in a
    # forked child) at half the cost of os.urandom's system call, which showed at 3-4 % of a `GET
    # /users/{id}` under load.
    return f"{random.getrandbits(128):032x}"


def request_id(scope: Scope) -> str:
    return request_id_of(scope["headers"])


def every_answer(request_id: str) -> list[tuple[bytes, bytes]]:
    """What the middleware adds to every response: the request id and the security headers."""
    return [(REQUEST_ID, request_id.encode()), *SECURITY_HEADERS]
