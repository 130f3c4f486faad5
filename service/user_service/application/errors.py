"""Failures of the application that are not rules of the domain."""

from uuid import UUID


class ApplicationError(Exception):
    pass


class UserNotFound(ApplicationError):
    def __init__(self, key: UUID | str) -> None:
        super().__init__(f"no user {key}")
        self.key = key


class StorageUnavailable(ApplicationError):
    """The database cannot be reached, or had no free connection in time (`busy`); retrying may work."""

    def __init__(self, reason: str, *, busy: bool = False) -> None:
        super().__init__(reason)
        self.busy = busy
