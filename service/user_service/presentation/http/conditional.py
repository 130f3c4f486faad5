"""Conditional requests (RFC 9110 §13) on a user: its ETag, `If-None-Match` on reads, `If-Match` and
`If-None-Match` on changes.

A user's entity tag is strong and names one state of one user: `"<id>.<version>"`. It is the same on
every route that answers with the user (by id, by username, after a change), so a tag read anywhere
conditions a change anywhere; and since it names the user, `GET /users/@alice` never answers 304 to a tag
of another user who held that username before.

- Reads (`GET`): `If-None-Match` (weak comparison) matching the current tag, or `*`, is a 304 without a
  body, with the tag.
- Changes (`PUT`, `DELETE`): `If-Match` (strong comparison: a weak tag never matches) and `If-None-Match`
  become the command's `Precondition`, which its handler checks on the user as locked; a condition that
  does not hold is a 412 problem, and nothing changes. `*` is "a live user". No date conditions: the
  service sends no `Last-Modified`, so `If-Unmodified-Since` and `If-Modified-Since` are ignored, as
  RFC 9110 §13.1.3-4 says.
- A field that is not a list of entity tags (RFC 9110 §8.8.3) is a 422 problem, never a condition ignored.
"""

import re
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Header
from fastapi.exceptions import RequestValidationError
from pydantic.json_schema import SkipJsonSchema
from starlette.responses import Response

from user_service.application.preconditions import Precondition, Versions
from user_service.application.read_models import UserView

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text (header values are latin-1)
_ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
_SPACE = " \t"
_VERSION = re.compile(r"[1-9][0-9]{0,9}")  # as `etag` writes it: no leading zeros


# RFC 9110 §13.1.1-2: `*` or a list of entity tags (obs-text aside); the header's schema says so.
ENTITY_TAGS = r'^[ \t]*(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)[ \t]*$'
IfMatch = Annotated[
    str | SkipJsonSchema[None],
    Header(
        alias="If-Match",
        json_schema_extra={"pattern": ENTITY_TAGS},
        description=(
            "Change the user only if it is still in the state this entity tag names (an `ETag` of the "
            "user, from any answer that carried it), or, with `*`, only if it is live; else 412."
        ),
    ),
]
IfNoneMatch = Annotated[
    str | SkipJsonSchema[None],
    Header(
        alias="If-None-Match",
        json_schema_extra={"pattern": ENTITY_TAGS},
        description=(
            "On a read: 304 without a body when the user is still in the state one of these entity tags "
            "names (or for `*`). On a change: 412 when it is (`*`: when the user is live)."
        ),
    ),
]


def etag(view: UserView) -> str:
    return f'"{view.id}.{view.version}"'


@dataclass(frozen=True, slots=True)
class EntityTags:
    """A parsed `If-Match` or `If-None-Match`: `*`, or the listed tags as (weak, opaque-tag)."""

    every: bool
    tags: tuple[tuple[bool, str], ...]


def parse(header: str, value: str) -> EntityTags:
    """`*` or a comma-separated list of entity tags; raises a 422 validation error otherwise."""
    text = value.strip(_SPACE)
    if text == "*":
        return EntityTags(every=True, tags=())
    tags: list[tuple[bool, str]] = []
    at, expect_tag = 0, True
    while at < len(text):
        char = text[at]
        if char in _SPACE:
            at += 1
        elif char == ",":
            at, expect_tag = at + 1, True
        elif expect_tag and (match := _ENTITY_TAG.match(text, at)):
            tags.append((match[1] is not None, match[2]))
            at, expect_tag = match.end(), False
        else:
            raise _invalid(header, value)
    return EntityTags(every=False, tags=tuple(tags))


def _invalid(header: str, value: str) -> RequestValidationError:
    message = 'must be * or a list of entity tags, e.g. "3fa85f64-5717-4562-b3fc-2c963f66afa6.2"'
    return RequestValidationError(
        [{"type": "value_error", "loc": ("header", header), "msg": message, "input": value}]
    )


def _versions(tags: EntityTags, user_id: UUID, *, weak: bool) -> Versions:
    """The versions of `user_id` the tags name; tags of other users, or of no user, name none."""
    if tags.every:
        return Versions(every=True)
    found = set()
    for is_weak, opaque in tags.tags:
        owner, _, version = opaque.rpartition(".")
        if (weak or not is_weak) and owner == str(user_id) and _VERSION.fullmatch(version):
            found.add(int(version))
    return Versions(frozenset(found))


def precondition(user_id: UUID, if_match: str | None, if_none_match: str | None) -> Precondition:
    """The condition a change of `user_id` is made on, from its request's header fields."""
    return Precondition(
        if_match=None if if_match is None else _versions(parse("If-Match", if_match), user_id, weak=False),
        if_none_match=(
            None
            if if_none_match is None
            else _versions(parse("If-None-Match", if_none_match), user_id, weak=True)
        ),
    )


def not_modified(view: UserView, if_none_match: str | None, headers: dict[str, str]) -> Response | None:
    """A 304 when `If-None-Match` names the user's current state (weak comparison), else None."""
    if if_none_match is None:
        return None
    tags = parse("If-None-Match", if_none_match)
    current = etag(view)[1:-1]
    if tags.every or any(opaque == current for _, opaque in tags.tags):
        return Response(status_code=304, headers={"ETag": etag(view), **headers})
    return None
