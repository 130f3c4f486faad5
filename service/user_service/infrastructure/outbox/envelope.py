"""The message consumers code against: a CloudEvents 1.0 JSON envelope (structured mode)."""

from datetime import datetime

import orjson

from user_service.application.read_models import UserView
from user_service.domain.events import UserEvent

SOURCE = "user-service"
CONTENT_TYPE = "application/cloudevents+json"
# The sequence extension asks for strings that order as they compare: the version, zero-padded to the
# digits of the largest version a user can reach (users.version is a 32-bit integer).
SEQUENCE_DIGITS = 10


def sequence(version: int) -> str:
    """The CloudEvents `sequence` of the event that made `version` of its user."""
    return f"{version:0{SEQUENCE_DIGITS}d}"


def cloud_event(event: UserEvent, user: UserView, time: datetime) -> str:
    """The envelope of `event`; `data` is the user after the change, exactly as the API shows it;
    `sequence` orders the events of one subject (the user's version)."""
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(event.event_id),
            "source": SOURCE,
            "type": event.type,
            "subject": str(event.user_id),
            "time": time.isoformat().replace("+00:00", "Z"),
            "sequence": sequence(event.version),
            "datacontenttype": "application/json",
            "data": user.representation(),
        }
    ).decode()
