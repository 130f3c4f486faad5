"""Request bodies are JSON: what a route with a body accepts, and the 415 for what it does not.

- `application/json` (any parameters) is read as JSON, as is a body with no `Content-Type` (RFC 9110
  §8.3 lets the recipient examine the data then).
- `application/x-www-form-urlencoded`, what curl sends with `-d` unless told otherwise, is read as JSON
  when the body is a JSON object, so `curl -d '{...}'` works as it does against GitHub's API; a real form
  is a 415.
- Any other media type, or a body in a content coding (`Content-Encoding: gzip`), is a 415 problem that
  names `application/json`, with `Accept-Post` on POST (the LDP field the IANA registry lists for it) and
  `Accept-Encoding: identity` for a coding (RFC 9110 §15.5.16).
"""

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from user_service.presentation.http.absent_headers import Handler
from user_service.presentation.http.injection import InjectedRoute

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
_JSON_HEADER = (b"content-type", JSON.encode())


class UnsupportedMediaType(HTTPException):
    def __init__(self, detail: str, headers: dict[str, str]) -> None:
        super().__init__(415, detail, headers)


def media_type(content_type: str) -> str:
    """`type/subtype` of a Content-Type value, lower case, without its parameters."""
    return content_type.split(";", 1)[0].strip().lower()


class JsonBodyRoute(InjectedRoute):
    """A route whose body, when it has one, must be JSON (this module's docstring says which requests)."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler
        hint = {"Accept-Post": JSON} if "POST" in (self.methods or ()) else {}

        async def json_body(request: Request) -> Response:
            return await handler(await as_json(request, hint))

        return json_body


async def as_json(request: Request, hint: dict[str, str]) -> Request:
    """The request, to be read as JSON; raises `UnsupportedMediaType` when its body is not JSON."""
    coding = request.headers.get("content-encoding")
    if coding is not None and coding.strip().lower() not in ("", "identity"):
        raise UnsupportedMediaType(
            f"The body is in the content coding {coding!r}; send it as {JSON}, uncoded.",
            {"Accept-Encoding": "identity"},
        )
    content_type = request.headers.get("content-type")
    kind = None if content_type is None else media_type(content_type)
    if kind == JSON:
        return request
    if kind is None:
        return _relabelled(request, await request.body())
    if kind == FORM:
        body = await request.body()
        if _is_json_object(body):
            return _relabelled(request, body)
    raise UnsupportedMediaType(
        f"The body must be {JSON}; {content_type!r} is not accepted here.",
        hint,
    )


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False


def _relabelled(request: Request, body: bytes) -> Request:
    """The same request, labelled `application/json`, its body (already read) replayed."""
    headers = [(name, value) for name, value in request.scope["headers"] if name != b"content-type"]

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({**request.scope, "headers": [*headers, _JSON_HEADER]}, replay)
