"""`GET /healthcheck`, answered before any framework work: liveness touches nothing, so it costs nothing.

The route stays declared in FastAPI (`health.py`) for the OpenAPI document; this answers first, with the
same body and the headers of every answer (request id included), and no trace, metric or access line, as
for every probe.
"""

from starlette.types import Scope, Send

from user_service.presentation.http.headers import REQUEST_ID, SECURITY_HEADERS, request_id

_BODY = b'{"status":"ok"}'
_PATHS = frozenset({"/healthcheck", "/healthcheck/"})
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
    *SECURITY_HEADERS,
]


async def answer_liveness(scope: Scope, send: Send) -> bool:
    """Answer the request when it is a liveness probe; False when it is not one."""
    if scope["type"] != "http" or scope["path"] not in _PATHS or scope["method"] not in ("GET", "HEAD"):
        return False
    headers = [*_HEADERS, (REQUEST_ID, request_id(scope).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else _BODY})
    return True
