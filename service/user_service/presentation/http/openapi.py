"""What the OpenAPI document says beyond what FastAPI derives from the routes: each operation's
description (its use case's docstring, then what HTTP adds), the header fields of the answers, example
bodies of success, and the document's metadata (servers, contact, tags). Problem examples come from the
table of problems (`problems.responses`)."""

import inspect
from typing import Any

from user_service.presentation.http.problem_details import PROBLEM_JSON

USER_EXAMPLE: dict[str, Any] = {
    "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "username": "username",
    "first_name": "string",
    "last_name": "string",
    "middle_name": "Ann",
    "deleted": False,
}
ETAG_EXAMPLE = '"3fa85f64-5717-4562-b3fc-2c963f66afa6.2"'

TAGS = [
    {"name": "users", "description": "Create, read, list, rename and delete users."},
    {"name": "health", "description": "Liveness and readiness, for load balancers and orchestrators."},
]
SERVERS = [{"url": "/", "description": "This service, where it serves this document."}]
CONTACT = {"name": "User Service maintainers"}
DESCRIPTION = (
    "Users REST API. Errors are RFC 9457 problem details (`application/problem+json`). Changes are "
    "conditional on `If-Match` (RFC 9110 §13), creates retryable with `Idempotency-Key`, lists paged by "
    '`Link: <…>; rel="next"` (RFC 8288). The events each change publishes are described by the AsyncAPI '
    "document at `/asyncapi.json`."
)


def header(description: str, example: str, *, required: bool = True) -> dict[str, Any]:
    return {
        "description": description,
        "required": required,
        "schema": {"type": "string", "example": example},
    }


ETAG = header(
    "The user's entity tag: names this state of this user. Send it back in `If-Match` to change the "
    "user only if it is still in this state, or in `If-None-Match` to read it only if it changed.",
    ETAG_EXAMPLE,
)
LOCATION = header("The created user.", "/users/3fa85f64-5717-4562-b3fc-2c963f66afa6")
CONTENT_LOCATION = header(
    "The resource the body represents (and the ETag tags): the user.",
    "/users/3fa85f64-5717-4562-b3fc-2c963f66afa6",
)
LINK = header(
    'The next page, while users follow (RFC 8288): `<…>; rel="next"`, the same listing after this page\'s '
    "last user. Absent on the last page.",
    '</users/?limit=2&order=asc&after=AQAA…>; rel="next"',
    required=False,
)


def describe(use_case: type, *http: str) -> str:
    """An operation's description: its use case's docstring, then what HTTP adds to it."""
    paragraphs = inspect.cleandoc(use_case.__doc__ or "").split("\n\n")
    return "\n\n".join([*(" ".join(p.split()) for p in paragraphs), *http])


def answer(description: str, example: Any, **headers: dict[str, Any]) -> dict[str, Any]:
    """A documented success answer (JSON) with its example body and header fields."""
    documented: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"example": example}},
    }
    if headers:
        documented["headers"] = {name.replace("_", "-"): field for name, field in headers.items()}
    return documented


def not_modified(**headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": "Not modified: the user is still in the state `If-None-Match` names. No body.",
        "headers": {name.replace("_", "-"): field for name, field in headers.items()},
    }


def finish(document: dict[str, Any]) -> dict[str, Any]:
    """The document FastAPI made, saying what the service answers: an error's body is problem details,
    `application/problem+json` only (FastAPI also lists the route's `application/json` for a model)."""
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if PROBLEM_JSON in content and "application/json" in content:
                    schema = content.pop("application/json")["schema"]
                    content[PROBLEM_JSON] = {"schema": schema, **content[PROBLEM_JSON]}
    return document
