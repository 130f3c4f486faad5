"""What can go wrong by the rules of the domain."""

from uuid import UUID


class DomainError(Exception):
    """A rule of the domain refused the change."""


class InvalidValue(DomainError):
    """A value does not satisfy its rule; `field` names the value in the user's terms."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UserIsDeleted(DomainError):
    """A deleted user can be neither changed nor deleted again."""

    def __init__(self, user_id: UUID) -> None:
        super().__init__(f"user {user_id} is deleted")
        self.user_id = user_id


class UsernameTaken(DomainError):
    """Usernames are unique among live users, ignoring case."""

    def __init__(self, username: str) -> None:
        super().__init__(f"username {username!r} is taken")
        self.username = username


class UserIdTaken(DomainError):
    """A user id names one user forever, deleted or not."""

    def __init__(self, user_id: UUID) -> None:
        super().__init__(f"a user with id {user_id} exists")
        self.user_id = user_id
