"""A user as a row of `users`: the one place that names the columns a user is stored in.

The write side maps the aggregate to its row and back by column name (`row_of`, `user_of`), and its
statements list the columns of `UserRow`. The read side selects the fields of the read model in their
own order (`VIEW_COLUMNS`, derived from `UserView`), so `UserView(*record)` cannot put a column in the
wrong place. Both are checked against the schema when this module is imported: a column renamed in
`tables.py` fails the start, not a request.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict
from uuid import UUID

import asyncpg
import sqlalchemy as sa

from user_service.application.read_models import UserView
from user_service.domain.user import User
from user_service.domain.values import FullName, Name, Username
from user_service.infrastructure.db import tables


class UserRow(TypedDict):
    """The columns of `users` that hold the aggregate's state (the others have server defaults)."""

    id: UUID
    username: str
    first_name: str
    last_name: str
    middle_name: str | None
    deleted_at: datetime | None
    version: int


STATE_COLUMNS: tuple[str, ...] = tuple(UserRow.__annotations__)
# Read-model fields that are not columns as such.
_VIEW_EXPRESSIONS = {"deleted": "deleted_at IS NOT NULL AS deleted"}
VIEW_COLUMNS = ", ".join(_VIEW_EXPRESSIONS.get(field, field) for field in UserView._fields)


def row_of(user: User) -> UserRow:
    name = user.full_name
    return UserRow(
        id=user.id,
        username=user.username.value,
        first_name=name.first.value,
        last_name=name.last.value,
        middle_name=None if name.middle is None else name.middle.value,
        deleted_at=user.deleted_at,
        version=user.version,
    )


def row_values(row: UserRow) -> list[Any]:
    """The row's values in the order of `STATE_COLUMNS`, the order of the statements' parameters."""
    by_name: Mapping[str, Any] = row
    return [by_name[column] for column in STATE_COLUMNS]


def user_of(row: asyncpg.Record) -> User:
    middle = row["middle_name"]
    return User(
        row["id"],
        Username(row["username"]),
        FullName(
            Name(row["first_name"], "first_name"),
            Name(row["last_name"], "last_name"),
            None if middle is None else Name(middle, "middle_name"),
        ),
        row["deleted_at"],
        row["version"],
    )


def check_schema(table: sa.Table) -> None:
    """Raise when the mapping and the table disagree: a column one of them does not know."""
    columns = set(table.c.keys())
    unknown = [c for c in STATE_COLUMNS if c not in columns]
    unknown += [f for f in UserView._fields if f not in _VIEW_EXPRESSIONS and f not in columns]
    unmapped = [c.name for c in table.c if c.name not in STATE_COLUMNS and c.server_default is None]
    if unknown or unmapped:
        raise RuntimeError(f"users: not in the schema {unknown}, in the schema but not mapped {unmapped}")


check_schema(tables.users)
