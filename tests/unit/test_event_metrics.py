"""Committed changes are counted by their event's type, for every event type there is or will be."""

import uuid
from dataclasses import dataclass
from typing import ClassVar

import pytest

from user_service.domain import events
from user_service.domain.events import USER_EVENTS, UserEvent
from user_service.infrastructure.telemetry.metrics import USER_EVENTS_COMMITTED, count_committed


def subclasses(cls: type[UserEvent]) -> list[type[UserEvent]]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *subclasses(direct))]


def of_the_domain() -> list[type[UserEvent]]:
    """The domain's event classes (a slotted dataclass leaves its pre-slots class among the subclasses)."""
    return [c for c in subclasses(UserEvent) if getattr(events, c.__name__, None) is c]


def counted(event_type: str) -> float:
    return USER_EVENTS_COMMITTED.labels(event_type)._value.get()


def an_event_of(cls: type[UserEvent]) -> UserEvent:
    extra = {"old": "a", "new": "b"} if cls is events.UsernameChanged else {}
    return cls(user_id=uuid.uuid4(), version=1, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", of_the_domain())
def test_every_event_of_the_domain_counts_under_its_type(cls: type[UserEvent]) -> None:
    before = counted(cls.type)
    count_committed([an_event_of(cls), an_event_of(cls)])
    assert counted(cls.type) == before + 2


def test_the_domain_lists_every_event_it_defines() -> None:
    assert set(of_the_domain()) == set(USER_EVENTS)


def test_a_new_event_type_counts_with_no_metrics_edit() -> None:
    @dataclass(frozen=True, kw_only=True, slots=True)
    class EmailChanged(UserEvent):
        type: ClassVar[str] = "user.email_changed"

    @dataclass(frozen=True, kw_only=True, slots=True)
    class Untyped(UserEvent):  # one that forgot its type still counts, under its class's name
        pass

    count_committed([EmailChanged(user_id=uuid.uuid4(), version=2), Untyped(user_id=uuid.uuid4(), version=3)])
    assert counted("user.email_changed") == 1
    assert counted("Untyped") == 1


def test_every_known_type_is_exported_before_its_first_change() -> None:
    exported = {s.labels["type"] for s in next(iter(USER_EVENTS_COMMITTED.collect())).samples}
    assert {cls.type for cls in USER_EVENTS} <= exported
