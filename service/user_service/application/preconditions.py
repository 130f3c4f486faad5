"""A client's condition on a change: the change applies only to the state of the user it last saw.

Checked by the command's handler on the user as loaded under its row lock, so no other change can come
between the check and the write.
"""

from dataclasses import dataclass

from user_service.application.errors import PreconditionFailed
from user_service.domain.user import User


@dataclass(frozen=True, slots=True)
class Versions:
    """Some versions of one user, or `every` version of a live user (HTTP's `*`)."""

    versions: frozenset[int] = frozenset()
    every: bool = False

    def hold(self, user: User) -> bool:
        return not user.deleted if self.every else user.version in self.versions


@dataclass(frozen=True, slots=True)
class Precondition:
    """`if_match`: the user must be at one of these versions; `if_none_match`: at none of them.
    None is no condition."""

    if_match: Versions | None = None
    if_none_match: Versions | None = None

    def check(self, user: User) -> None:
        """Raise `PreconditionFailed` unless the user, loaded to be changed, meets the condition."""
        if self.if_match is not None and not self.if_match.hold(user):
            raise PreconditionFailed(user.id)
        if self.if_none_match is not None and self.if_none_match.hold(user):
            raise PreconditionFailed(user.id)


NO_PRECONDITION = Precondition()
