"""What the read side returns, and the one public representation of a user.

The API and the published events share the representation, so they cannot drift apart.
"""

from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from user_service.domain.user import User


class UserView(NamedTuple):
    """Immutable; a named tuple because a page of users builds a hundred of them per request, at a quarter
    of a frozen dataclass's cost."""

    id: UUID
    username: str
    first_name: str
    last_name: str
    middle_name: str | None
    deleted: bool
    version: int  # not part of the representation: the API shows it as the ETag, events as `sequence`

    @classmethod
    def of(cls, user: User) -> "UserView":
        name = user.full_name
        return cls(
            id=user.id,
            username=user.username.value,
            first_name=name.first.value,
            last_name=name.last.value,
            middle_name=None if name.middle is None else name.middle.value,
            deleted=user.deleted,
            version=user.version,
        )

    def representation(self) -> dict[str, Any]:
        """The user as clients see it: a deleted user shows no username, and absent values are omitted."""
        out: dict[str, Any] = {"id": str(self.id)}
        if not self.deleted:
            out["username"] = self.username
        out["first_name"] = self.first_name
        out["last_name"] = self.last_name
        if self.middle_name is not None:
            out["middle_name"] = self.middle_name
        out["deleted"] = self.deleted
        return out


class Position(NamedTuple):
    """Where a user stands in the order of every listing: its creation time, then its id."""

    created_at: datetime
    id: UUID


class Page(NamedTuple):
    """A page of users; `next` is the position after which the next page starts, None when none follows."""

    users: list[UserView]
    next: Position | None
