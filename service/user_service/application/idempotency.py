"""Idempotent requests: a client's Idempotency-Key names one request, and a retry of it is answered
with the first answer instead of being done twice.

The unit of work records the key with the change it answers, in the same write, so the key exists exactly
when the change does: a request that failed left no key, and its retry runs anew.
"""

from dataclasses import dataclass

from user_service.application.read_models import UserView


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A request made with an idempotency key; `fingerprint` tells whether a retry is the same request."""

    key: str
    fingerprint: bytes


class KeyAlreadyUsed(Exception):
    """Raised by the commit that would record a key already recorded (live): nothing was written.

    Never reaches a client: the handler answers it, with the first answer or with `IdempotencyKeyReused`.
    """

    def __init__(self, fingerprint: bytes, answer: UserView) -> None:
        super().__init__("the idempotency key was used before")
        self.fingerprint = fingerprint
        self.answer = answer
