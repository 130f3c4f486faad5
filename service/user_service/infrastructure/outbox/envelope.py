"""The message consumers code against: a CloudEvents 1.0 JSON envelope (structured mode)."""

from datetime import datetime

import orjson

from user_service.application.read_models import UserView
from user_service.domain.events import UserEvent

SOURCE = "user-service"
CONTENT_TYPE = "application/cloudevents+json"


def cloud_event(event: UserEvent, user: UserView, time: datetime) -> str:
    """The envelope of `event`; `data` is the user after the change, exactly as the API shows it."""
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(event.event_id),
            "source": SOURCE,
            "type": event.type,
            "subject": str(event.user_id),
            "time": time.isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": user.representation(),
        }
    ).decode()
