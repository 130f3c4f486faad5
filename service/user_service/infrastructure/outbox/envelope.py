"""The message consumers code against: a CloudEvents 1.0 JSON envelope (structured mode).

`cloud_event` builds it, and `envelope_schema` is its JSON Schema, side by side: the AsyncAPI document
(presentation/http/asyncapi.py) publishes the schema, and the tests hold every envelope built here to it.
"""

from datetime import datetime
from typing import Any

import orjson

from user_service.application.read_models import UserView
from user_service.domain.events import UserEvent

SPECVERSION = "1.0"
SOURCE = "user-service"
CONTENT_TYPE = "application/cloudevents+json"
DATA_CONTENT_TYPE = "application/json"
# The sequence extension asks for strings that order as they compare: the version, zero-padded to the
# digits of the largest version a user can reach (users.version is a 32-bit integer).
SEQUENCE_DIGITS = 10
DATA_SCHEMA_VERSION = 1
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def sequence(version: int) -> str:
    """The CloudEvents `sequence` of the event that made `version` of its user."""
    return f"{version:0{SEQUENCE_DIGITS}d}"


def dataschema(event_type: str) -> str:
    """The `dataschema` of events of `event_type`: the `$id` of their data's schema in the AsyncAPI
    document. A new number when the data changes in a way its consumers must know."""
    return f"urn:user-service:schema:{event_type}:{DATA_SCHEMA_VERSION}"


def cloud_event(event: UserEvent, user: UserView, time: datetime) -> str:
    """The envelope of `event`; `data` is the user after the change, exactly as the API shows it;
    `sequence` orders the events of one subject (the user's version)."""
    return orjson.dumps(
        {
            "specversion": SPECVERSION,
            "id": str(event.event_id),
            "source": SOURCE,
            "type": event.type,
            "subject": str(event.user_id),
            "time": time.isoformat().replace("+00:00", "Z"),
            "sequence": sequence(event.version),
            "datacontenttype": DATA_CONTENT_TYPE,
            "dataschema": dataschema(event.type),
            "data": user.representation(),
        }
    ).decode()


def envelope_schema(event: type[UserEvent], data: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of `cloud_event`'s envelopes of `event`; `data` is the schema of their data (a
    `$ref`, say). Every attribute it builds is here, and nothing else."""
    return {
        "type": "object",
        "description": f"{_summary(event)} A CloudEvents {SPECVERSION} envelope in structured mode.",
        "required": [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "sequence",
            "datacontenttype",
            "dataschema",
            "data",
        ],
        "properties": {
            "specversion": {"const": SPECVERSION, "description": "The CloudEvents version."},
            "id": {
                "type": "string",
                "format": "uuid",
                "pattern": UUID_PATTERN,
                "description": "The event's id (a UUIDv7), unique per event: delivery is at least once, "
                "so de-duplicate on it. It is also the AMQP message_id.",
            },
            "source": {"const": SOURCE, "description": "The producer."},
            "type": {"const": event.type, "description": "The event type; also the routing key."},
            "subject": {
                "type": "string",
                "format": "uuid",
                "pattern": UUID_PATTERN,
                "description": "The id of the user it is about.",
            },
            "time": {
                "type": "string",
                "format": "date-time",
                "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$",
                "description": "When the change committed, in UTC.",
            },
            "sequence": {
                "type": "string",
                "pattern": f"^[0-9]{{{SEQUENCE_DIGITS}}}$",
                "description": "CloudEvents sequence extension: the user's version after the change, "
                f"zero-padded to {SEQUENCE_DIGITS} digits. It orders the events of one subject (1 for "
                "user.created, one more with each change, no gaps): a consumer orders and de-duplicates "
                "a user's events by it, and it is the version in the user's HTTP ETag.",
            },
            "datacontenttype": {"const": DATA_CONTENT_TYPE},
            "dataschema": {"const": dataschema(event.type), "description": "The `$id` of `data`'s schema."},
            "data": data,
        },
    }


def _summary(event: type[UserEvent]) -> str:
    return (event.__doc__ or event.type).strip().split("\n\n")[0]
