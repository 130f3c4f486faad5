"""The `Idempotency-Key` request header (draft-ietf-httpapi-idempotency-key-header): an RFC 8941 String.

`Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`: a quoted string of printable ASCII in which
`\\"` and `\\\\` are the escapes, 1 to 255 characters once unescaped. Parameters are refused (the draft
defines none), as is anything else that is not a single such string: a 422 validation problem.
"""

from typing import Annotated

from fastapi import Header
from fastapi.exceptions import RequestValidationError
from pydantic.json_schema import SkipJsonSchema

HEADER = "Idempotency-Key"
MAX_LENGTH = 255
# The header's schema in the OpenAPI document: the same language as `parse` accepts.
PATTERN = r'^"([ !#-\[\]-~]|\\["\\]){1,255}"$'
MESSAGE = (
    'must be a structured-field string (RFC 8941), e.g. "8e03978e-40d5-43e8-bc93-6894a57f9324": '
    f'1 to {MAX_LENGTH} printable ASCII characters in double quotes, \\ escaping " and \\'
)


IdempotencyKey = Annotated[
    str | SkipJsonSchema[None],
    Header(
        alias=HEADER,
        description=(
            "Makes the create safe to retry: a retry with the same key and body is answered as the first "
            "request was (status, body, `Location`, `ETag`) and creates nothing; the same key with another "
            "body is a 422 problem. A key is kept IDEMPOTENCY_KEY_HOURS (24 by default) after the create; "
            f"it {MESSAGE}."
        ),
        json_schema_extra={
            "pattern": PATTERN,
            "maxLength": 2 + 2 * MAX_LENGTH,
        },
    ),
]


def parse(value: str) -> str:
    """The key an `Idempotency-Key` field value holds; raises a 422 validation error otherwise."""
    text = value.strip(" ")
    if len(text) < 2 or text[0] != '"':
        raise _invalid(value)
    key: list[str] = []
    at = 1
    while at < len(text):
        char = text[at]
        if char == "\\":
            if at + 1 >= len(text) or text[at + 1] not in '"\\':
                raise _invalid(value)
            key.append(text[at + 1])
            at += 2
        elif char == '"':
            if at != len(text) - 1 or not 1 <= len(key) <= MAX_LENGTH:
                raise _invalid(value)
            return "".join(key)
        elif " " <= char <= "~":
            key.append(char)
            at += 1
        else:
            raise _invalid(value)
    raise _invalid(value)  # no closing quote


def _invalid(value: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("header", HEADER), "msg": MESSAGE, "input": value}]
    )
