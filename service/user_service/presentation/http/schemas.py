"""Request and response bodies as the OpenAPI document states them.

The patterns and lengths mirror the domain's rules so the document tells clients the truth;
the domain still decides (a name's letters of any script are checked there).
"""

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from user_service.domain.values import MARKS_PER_LETTER, NAME_MAX, USERNAME_MAX
from user_service.presentation.http.openapi import USER_EXAMPLE

USERNAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
# Letters of any script, marks, spaces, - ' ’ and periods; the domain also asks for one letter at least.
NAME_PATTERN = r"^[^\x00-\x1f\x7f!-&(-,/-@\[-`{-~]+$"

Username = Annotated[
    str, Field(min_length=1, max_length=USERNAME_MAX, pattern=USERNAME_PATTERN, examples=["username"])
]
# The domain decides the length on the normalised, trimmed value (NAME_MAX); the raw text may be longer
# (surrounding spaces, a decomposed form with its combining marks).
NAME_RAW_MAX = NAME_MAX * (1 + MARKS_PER_LETTER) + 64
PersonName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=NAME_RAW_MAX,
        pattern=NAME_PATTERN,
        description=f"{NAME_MAX} characters at most once normalised to NFC and trimmed.",
    ),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateUserBody(Body):
    user_id: UUID | None = Field(
        default=None, description="Chosen by the client; a UUIDv7 is made when absent."
    )
    username: Username
    first_name: Annotated[PersonName, Field(examples=["string"])]
    last_name: Annotated[PersonName, Field(examples=["string"])]
    middle_name: Annotated[PersonName | None, Field(examples=["Ann"])] = None


class ChangeUsernameBody(Body):
    username: Username


class ChangeFullNameBody(Body):
    first_name: PersonName
    last_name: PersonName
    middle_name: Annotated[PersonName | None, Field(description="Absent clears it.")] = None


def _absent_when_none(schema: dict[str, Any]) -> None:
    """A value the representation omits when it has none: no `default: null` in its schema."""
    schema.pop("default", None)


class UserOut(BaseModel):
    """A user. Absent values are omitted: a deleted user shows no username."""

    model_config = ConfigDict(json_schema_extra={"examples": [USER_EXAMPLE]})
    id: UUID = Field(description="The user's id: one user's, forever.")
    # Absent, never null: a deleted user shows no username, a user without a middle name none.
    username: (
        Annotated[str, Field(max_length=USERNAME_MAX, pattern=USERNAME_PATTERN)] | SkipJsonSchema[None]
    ) = Field(
        default=None,
        description="Unique among live users, ignoring case; absent once the user is deleted.",
        json_schema_extra=_absent_when_none,
    )
    first_name: str
    last_name: str
    middle_name: str | SkipJsonSchema[None] = Field(
        default=None, description="Absent when the user has none.", json_schema_extra=_absent_when_none
    )
    deleted: bool = Field(description="A deleted user stays readable by id and can change no more.")


class UserList(BaseModel):
    users: list[UserOut]


class Health(BaseModel):
    status: str


class PoolState(BaseModel):
    used: int
    idle: int
    max: int
    waiting: int = Field(description="Requests waiting for a connection.")


class ReplicaStatus(BaseModel):
    state: str = Field(description="ok, lagging, down or disabled")
    reason: str | None = Field(description="Why reads are not on the replica, when they are not.")
    staleness_seconds: float | None = Field(
        description="At most this many seconds of acknowledged writes are missing on the replica."
    )
    replayed: str | None = Field(description="The replica's replayed WAL position, as last seen.")


class Readiness(BaseModel):
    status: str
    checks: dict[str, str] = Field(
        description="Each dependency: ok, down or disabled; `database_pool` is ok or saturated; "
        "`database_replica` ok, lagging, down or disabled (reads fall back to the primary unless ok)."
    )
    pool: PoolState
    replica: ReplicaStatus


class FieldError(BaseModel):
    field: str = Field(description="The bad field's name, dotted when nested.")
    location: Literal["body", "query", "path", "header"] = Field(description="Where the field was sent.")
    pointer: str = Field(
        description=(
            "JSON Pointer (RFC 6901) to the bad value as a URI fragment, as in RFC 9457 §3: into the body, "
            "or into the query, path or headers taken as one object by name; `#` is the whole of it."
        ),
        examples=["#/username"],
    )
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None
