"""Domain events: what happened to a user, recorded by the aggregate, published after commit."""

from dataclasses import dataclass, field
from typing import ClassVar
from uuid import UUID

from user_service.domain.ids import uuid7


@dataclass(frozen=True, kw_only=True, slots=True)
class UserEvent:
    type: ClassVar[str]
    user_id: UUID
    event_id: UUID = field(default_factory=uuid7)


@dataclass(frozen=True, kw_only=True, slots=True)
class UserCreated(UserEvent):
    type: ClassVar[str] = "user.created"


@dataclass(frozen=True, kw_only=True, slots=True)
class UsernameChanged(UserEvent):
    type: ClassVar[str] = "user.username_changed"
    old: str
    new: str


@dataclass(frozen=True, kw_only=True, slots=True)
class FullNameChanged(UserEvent):
    type: ClassVar[str] = "user.full_name_changed"


@dataclass(frozen=True, kw_only=True, slots=True)
class UserDeleted(UserEvent):
    type: ClassVar[str] = "user.deleted"
