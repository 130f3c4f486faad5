"""The user's row mapping: one list of columns, checked against the schema, and a lossless round trip."""

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from user_service.application.read_models import UserView
from user_service.domain.user import User
from user_service.domain.values import FullName, Username
from user_service.infrastructure.db import tables
from user_service.infrastructure.db.rows import (
    STATE_COLUMNS,
    VIEW_COLUMNS,
    check_schema,
    row_of,
    row_values,
    user_of,
)


def test_a_user_survives_its_row() -> None:
    user = User(uuid.uuid4(), Username("Ann"), FullName.of("Ann", "Lee", "Mo"), datetime.now(UTC), 7)
    back = user_of(row_of(user))  # type: ignore[arg-type]
    assert (back.id, back.username, back.full_name, back.deleted_at, back.version) == (
        user.id,
        user.username,
        user.full_name,
        user.deleted_at,
        7,
    )
    assert list(row_of(user)) == list(STATE_COLUMNS)
    assert row_values(row_of(user))[STATE_COLUMNS.index("username")] == "Ann"


def test_the_read_side_selects_the_view_fields_in_order() -> None:
    selected = [part.split(" AS ")[-1].strip() for part in VIEW_COLUMNS.split(", ")]
    assert selected == list(UserView._fields)


def _users_with(*extra: sa.Column[object]) -> sa.Table:
    columns = [sa.Column(c.name, c.type, server_default=c.server_default) for c in tables.users.c]
    return sa.Table("users", sa.MetaData(), *columns, *extra)


def test_the_schema_check_passes_today() -> None:
    check_schema(tables.users)


def test_a_column_the_mapping_does_not_know_fails_the_check() -> None:
    with pytest.raises(RuntimeError, match="email"):
        check_schema(_users_with(sa.Column("email", sa.Text)))


def test_a_column_with_a_server_default_needs_no_mapping() -> None:
    check_schema(_users_with(sa.Column("note", sa.Text, server_default="")))


def test_a_mapped_column_missing_from_the_schema_fails_the_check() -> None:
    columns = [sa.Column(c.name, c.type) for c in tables.users.c if c.name != "middle_name"]
    with pytest.raises(RuntimeError, match="middle_name"):
        check_schema(sa.Table("users", sa.MetaData(), *columns))
