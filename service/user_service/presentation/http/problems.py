"""Every error answer is RFC 9457 problem details; this module is the one table from errors to them."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from user_service.application.errors import (
    IdempotencyKeyReused,
    PreconditionFailed,
    StorageCause,
    StorageUnavailable,
    UserNotFound,
)
from user_service.domain.errors import InvalidValue, UserIdTaken, UserIsDeleted, UsernameTaken
from user_service.presentation.http import problem_details
from user_service.presentation.http.body_limit import TOO_LARGE_DETAIL
from user_service.presentation.http.problem_details import HTTP_TITLES, PROBLEM_JSON
from user_service.presentation.http.schemas import Problem

log = structlog.get_logger("user_service.errors")

TYPE_BASE = "urn:user-service:problem:"


@dataclass(frozen=True, slots=True)
class ProblemType:
    status: int
    slug: str
    title: str

    @property
    def uri(self) -> str:
        return TYPE_BASE + self.slug


# Errors of the application and the domain, and what a client sees of them.
ERRORS: dict[type[Exception], ProblemType] = {
    UserNotFound: ProblemType(404, "user-not-found", "User not found"),
    UsernameTaken: ProblemType(409, "username-taken", "Username taken"),
    UserIdTaken: ProblemType(409, "user-id-taken", "User id taken"),
    UserIsDeleted: ProblemType(409, "user-deleted", "User deleted"),
    PreconditionFailed: ProblemType(412, "precondition-failed", "Precondition failed"),
    InvalidValue: ProblemType(422, "validation-error", "Invalid request"),
    IdempotencyKeyReused: ProblemType(422, "idempotency-key-reused", "Idempotency key reused"),
    StorageUnavailable: ProblemType(503, "service-unavailable", "Service unavailable"),
}
VALIDATION = ERRORS[InvalidValue]
UNAVAILABLE = ERRORS[StorageUnavailable]
UNAVAILABLE_DETAILS = {
    StorageCause.POOL_TIMEOUT: "The service is busy: no database connection was free in time; retry shortly.",
    StorageCause.STATEMENT_TIMEOUT: (
        "The database did not answer in time: a statement ran past its limit; retry shortly."
    ),
    StorageCause.UNREACHABLE: "The database is unavailable; retry shortly.",
}
INTERNAL = ProblemType(500, "internal-error", "Internal server error")


class ProblemResponse(Response):
    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        return problem_details.render(content)


def problem(
    request: Request,
    kind: ProblemType | None,
    detail: str,
    *,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    status = status or (kind.status if kind else 500)
    body = problem_details.body(
        status,
        detail,
        type=kind.uri if kind else problem_details.ABOUT_BLANK,
        title=kind.title if kind else None,
        instance=request.url.path,
        request_id=request.scope.get("request_id"),
        **extra,
    )
    return ProblemResponse(body, status_code=status, headers=headers)


def _kind_of(exc: Exception) -> ProblemType | None:
    for cls in type(exc).__mro__:
        if cls in ERRORS:
            return ERRORS[cls]
    return None


# Characters a URI fragment may hold as they are (RFC 3986 §3.5), beside the unreserved ones.
_FRAGMENT_SAFE = "!$&'()*+,;=:@/?"


def json_pointer(path: Sequence[str | int]) -> str:
    """An RFC 6901 JSON Pointer to `path` in its URI fragment form, as RFC 9457 §3 uses it (`#/username`);
    `#` alone is the whole document."""
    tokens = (str(part).replace("~", "~0").replace("/", "~1") for part in path)
    return "#" + "".join("/" + quote(token, safe=_FRAGMENT_SAFE) for token in tokens)


def field_error(field: str, location: str, path: Sequence[str | int], message: str) -> dict[str, str]:
    """One item of a validation problem's `errors`: `pointer` points at the bad value inside its
    `location` (the body; or the query, path or headers taken as one object by name)."""
    return {"field": field, "location": location, "pointer": json_pointer(path), "message": message}


async def _application_error(request: Request, exc: Exception) -> Response:
    kind = _kind_of(exc)
    if kind is None:  # pragma: no cover - every registered class is in the table
        raise exc
    if isinstance(exc, InvalidValue):
        errors = [field_error(exc.field, "body", [exc.field], exc.message)]
        return problem(request, kind, f"{exc.field}: {exc.message}", errors=errors)
    if isinstance(exc, StorageUnavailable):
        log.warning("request failed: database unavailable", cause=exc.cause.value, reason=str(exc))
        return problem(request, kind, UNAVAILABLE_DETAILS[exc.cause], headers={"Retry-After": "1"})
    if isinstance(exc, PreconditionFailed):
        detail = (
            "The user is not in the state If-Match or If-None-Match names; nothing was changed. "
            "Read it again (its ETag is current) and decide anew."
        )
        return problem(request, kind, detail)
    if isinstance(exc, IdempotencyKeyReused):
        detail = (
            "This Idempotency-Key was first sent with another request; a key stands for one request. "
            "Nothing was created: send a new key with a new request."
        )
        return problem(request, kind, detail)
    return problem(request, kind, str(exc))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        location = loc[0] if loc else "body"
        # A body that is not JSON at all names no field (its loc holds the parser's position).
        path = [] if error.get("type") == "json_invalid" else loc[1:]
        field = ".".join(path) or location
        errors.append(field_error(field, location, path, error.get("msg", "invalid")))
    fields = ", ".join(sorted({e["field"] for e in errors}))
    return problem(request, VALIDATION, f"Invalid {fields}.", errors=errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        # FastAPI answers 400 when it cannot decode the body (invalid UTF-8, nesting past the parser's
        # limit): invalid input like any other, so 422.
        message = "the body is not JSON that can be read (invalid UTF-8, or nested too deeply)"
        errors = [field_error("body", "body", [], message)]
        return problem(request, VALIDATION, f"Invalid body: {message}.", errors=errors)
    detail = exc.detail if isinstance(exc.detail, str) else HTTP_TITLES.get(exc.status_code, "Error")
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route {request.url.path}."
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        detail = f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}."
        return problem(request, None, detail, status=405, headers={"Allow": ", ".join(allowed)})
    elif exc.status_code == 413:
        detail = TOO_LARGE_DETAIL
    return problem(request, None, detail, status=exc.status_code, headers=dict(exc.headers or {}))


def _allowed_methods(request: Request) -> list[str]:
    methods = set()
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            methods.add(method)
    if "GET" in methods:
        methods.add("HEAD")  # answered as GET without the body (middleware.py)
    return sorted(methods)


def install(app: FastAPI) -> None:
    for cls in ERRORS:
        app.add_exception_handler(cls, _application_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    # Unexpected errors are answered (and logged once) by the request middleware.


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route, for its OpenAPI entry, each with an example body."""
    return {
        status: {
            "model": Problem,
            "content": {PROBLEM_JSON: {"example": _EXAMPLES.get(status) or _example(status)}},
            "description": _describe(status),
            **({"headers": _HEADERS[status]} if status in _HEADERS else {}),
        }
        for status in statuses
    }


# What an example problem says, per status: the first problem type of the table with that status, or
# the HTTP status's own problem (about:blank).
_EXAMPLE_DETAILS = {
    404: "no user 3fa85f64-5717-4562-b3fc-2c963f66afa6",
    409: "username 'alice' is taken",
    412: "The user is not in the state If-Match or If-None-Match names; nothing was changed.",
    413: TOO_LARGE_DETAIL,
    415: "The body must be application/json; 'text/plain' is not accepted here.",
    503: UNAVAILABLE_DETAILS[StorageCause.UNREACHABLE],
}
_EXAMPLES = {
    422: problem_details.body(
        422,
        "Invalid username.",
        type=VALIDATION.uri,
        title=VALIDATION.title,
        instance="/users",
        request_id="5f0c6a1e2b7d4c3a9e8f1b2c3d4e5f60",
        errors=[
            field_error(
                "username", "body", ["username"], "String should match pattern '^[A-Za-z][A-Za-z0-9_]*$'"
            )
        ],
    )
}
_HEADERS = {
    503: {"Retry-After": {"description": "Seconds to wait before a retry.", "schema": {"type": "string"}}}
}


def _example(status: int) -> dict[str, Any]:
    kind = next((kind for kind in ERRORS.values() if kind.status == status), None)
    return problem_details.body(
        status,
        _EXAMPLE_DETAILS.get(status, HTTP_TITLES.get(status, "Error")),
        type=kind.uri if kind else problem_details.ABOUT_BLANK,
        title=kind.title if kind else None,
        instance="/users/3fa85f64-5717-4562-b3fc-2c963f66afa6",
        request_id="5f0c6a1e2b7d4c3a9e8f1b2c3d4e5f60",
    )


def _describe(status: int) -> str:
    kinds = [kind.title for kind in ERRORS.values() if kind.status == status]
    return " / ".join(kinds) or HTTP_TITLES.get(status, INTERNAL.title)
