"""Idempotency keys in PostgreSQL: recorded in the create's own statement, recalled when that statement
breaks a uniqueness rule, purged once expired.

A create with a key is still one statement: the data-modifying `WITH` that writes the user and its outbox
row writes the key too, so the three commit together or not at all. A concurrent request with the same key
waits on the key's (or the username's, or the id's) unique index until the first commits, then breaks the
rule; the key is then recalled and answered by the handler. A create without a key runs the statement it
always ran.
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from user_service.application.idempotency import IdempotentRequest
from user_service.application.read_models import UserView

# The key's columns in the create's statement, after its other parameters (see unit_of_work).
KEY_PARAMETERS = 4  # key, fingerprint, answer, lifetime in seconds
RECALL = (
    "SELECT fingerprint, answer::text AS answer, expires_at > clock_timestamp() AS live "
    "FROM idempotency_keys WHERE key = $1"
)
FORGET_EXPIRED = "DELETE FROM idempotency_keys WHERE key = $1 AND expires_at <= clock_timestamp()"
PURGE_BATCH = 10_000
_PURGE = (
    "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys "
    "WHERE expires_at <= clock_timestamp() LIMIT $1)"
)


def remembered(first: int) -> str:
    """The `WITH` item that records a key, its parameters numbered from `first`."""
    key, fingerprint, answer, lifetime = (f"${first + i}" for i in range(KEY_PARAMETERS))
    # Constant text: parameter numbers only.
    return (
        "remembered AS (INSERT INTO idempotency_keys (key, fingerprint, answer, expires_at) "  # noqa: S608
        f"VALUES ({key}, {fingerprint}, {answer}::jsonb, "
        f"clock_timestamp() + make_interval(secs => {lifetime})))"
    )


@dataclass(frozen=True, slots=True)
class PendingKey:
    request: IdempotentRequest
    answer: UserView

    def arguments(self, lifetime: float) -> list[Any]:
        answer = orjson.dumps(self.answer._asdict()).decode()
        return [self.request.key, self.request.fingerprint, answer, lifetime]


def answer_of(text: str) -> UserView:
    fields = orjson.loads(text)
    fields["id"] = UUID(fields["id"])
    return UserView(**fields)


class PostgresIdempotencyKeys:
    """The keys a unit of work records, by the id of the user whose creation they answer."""

    def __init__(self) -> None:
        self.pending: dict[UUID, PendingKey] = {}

    def record(self, request: IdempotentRequest, answer: UserView) -> None:
        self.pending[answer.id] = PendingKey(request, answer)


async def purge_expired_keys(conn: asyncpg.Connection, batch: int = PURGE_BATCH) -> int:
    """Delete the expired keys, in batches of at most `batch` rows (each its own short statement, so
    no statement holds many row locks or runs long), until none is left; the number deleted."""
    deleted = 0
    while True:
        status = await conn.execute(_PURGE, batch)
        count = int(status.rsplit(" ", 1)[-1])
        deleted += count
        if count < batch:
            return deleted
