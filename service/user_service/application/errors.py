"""Failures of the application that are not rules of the domain."""

from enum import StrEnum
from uuid import UUID


class ApplicationError(Exception):
    pass


class UserNotFound(ApplicationError):
    def __init__(self, key: UUID | str) -> None:
        super().__init__(f"no user {key}")
        self.key = key


class PreconditionFailed(ApplicationError):
    """The user is not in the state the change was conditioned on (it changed since the client saw it)."""

    def __init__(self, user_id: UUID) -> None:
        super().__init__(f"user {user_id} is not in the state the change was made for")
        self.user_id = user_id


class IdempotencyKeyReused(ApplicationError):
    """An idempotency key names one request: this one differs from the request it was first sent with."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the idempotency key {key!r} was used for another request")
        self.key = key


class StorageCause(StrEnum):
    """Why the storage could not do the work; each has its own answer and log field."""

    POOL_TIMEOUT = "pool_timeout"  # every connection was in use for the whole wait
    STATEMENT_TIMEOUT = "statement_timeout"  # a statement ran past its time
    UNREACHABLE = "unreachable"  # the database cannot be reached, or went away mid-request


class StorageUnavailable(ApplicationError):
    """The database could not do the work now, for `cause`; retrying may work."""

    def __init__(self, reason: str, cause: StorageCause = StorageCause.UNREACHABLE) -> None:
        super().__init__(reason)
        self.cause = cause
