"""The User aggregate: the only place a user's state changes, and where each change records its event."""

from datetime import datetime
from uuid import UUID

from user_service.domain import errors
from user_service.domain.events import FullNameChanged, UserCreated, UserDeleted, UserEvent, UsernameChanged
from user_service.domain.values import FullName, Username


class User:
    """A user. `version` counts its changes: 1 when registered, one more with each change (and its event),
    so a version names one state of the user, and the events of a user are numbered in order."""

    __slots__ = ("_events", "deleted_at", "full_name", "id", "username", "version")

    def __init__(
        self,
        id: UUID,
        username: Username,
        full_name: FullName,
        deleted_at: datetime | None = None,
        version: int = 1,
    ) -> None:
        self.id = id
        self.username = username
        self.full_name = full_name
        self.deleted_at = deleted_at
        self.version = version
        self._events: list[UserEvent] = []

    @classmethod
    def register(cls, id: UUID, username: Username, full_name: FullName) -> "User":
        user = cls(id, username, full_name)
        user._events.append(UserCreated(user_id=id, version=user.version))
        return user

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def change_username(self, username: Username) -> None:
        self._ensure_live()
        if username == self.username:
            return
        old, self.username = self.username, username
        self.version += 1
        self._events.append(
            UsernameChanged(user_id=self.id, version=self.version, old=old.value, new=username.value)
        )

    def change_full_name(self, full_name: FullName) -> None:
        self._ensure_live()
        if full_name == self.full_name:
            return
        self.full_name = full_name
        self.version += 1
        self._events.append(FullNameChanged(user_id=self.id, version=self.version))

    def delete(self, now: datetime) -> None:
        """Soft delete: the user stays readable by id, and its username is free for others."""
        self._ensure_live()
        self.deleted_at = now
        self.version += 1
        self._events.append(UserDeleted(user_id=self.id, version=self.version))

    @property
    def events(self) -> tuple[UserEvent, ...]:
        return tuple(self._events)

    def pull_events(self) -> list[UserEvent]:
        events, self._events = self._events, []
        return events

    def _ensure_live(self) -> None:
        if self.deleted_at is not None:
            raise errors.UserIsDeleted(self.id)
