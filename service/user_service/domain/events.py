"""Domain events: what happened to a user, recorded by the aggregate, published after commit."""

from dataclasses import dataclass, field
from typing import ClassVar
from uuid import UUID

from user_service.domain.ids import uuid7


@dataclass(frozen=True, kw_only=True, slots=True)
class UserEvent:
    """`version`: the user's version the change made (User.version), so a user's events are numbered in
    the order they happened."""

    type: ClassVar[str]
    user_id: UUID
    version: int
    event_id: UUID = field(default_factory=uuid7)


@dataclass(frozen=True, kw_only=True, slots=True)
class UserCreated(UserEvent):
    """A user was created."""

    type: ClassVar[str] = "user.created"


@dataclass(frozen=True, kw_only=True, slots=True)
class UsernameChanged(UserEvent):
    """A user's username changed."""

    type: ClassVar[str] = "user.username_changed"
    old: str
    new: str


@dataclass(frozen=True, kw_only=True, slots=True)
class FullNameChanged(UserEvent):
    """A user's first, middle or last name changed."""

    type: ClassVar[str] = "user.full_name_changed"


@dataclass(frozen=True, kw_only=True, slots=True)
class UserDeleted(UserEvent):
    """A user was deleted (soft: it stays readable by id, and its username is free again)."""

    type: ClassVar[str] = "user.deleted"


# Every event a user records, in the order of a user's life: what the published contract lists.
USER_EVENTS: tuple[type[UserEvent], ...] = (UserCreated, UsernameChanged, FullNameChanged, UserDeleted)
