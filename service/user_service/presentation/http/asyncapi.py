"""The AsyncAPI 3.0 document of the events: what consumers of the `users` exchange code against.

Made from the code that makes the messages, so the two cannot drift: the event types and their
descriptions from the domain's events, the exchange and its AMQP properties from the relay, the envelope
from `envelope.envelope_schema` (beside the `cloud_event` that builds it), each message's `data` from the
API's own schema of a user (the data is the user exactly as the API shows it), and every example from
`cloud_event` itself. Served at `GET /asyncapi.json`; docs/asyncapi.json is this document, committed
(`uv run python -m user_service.presentation.http.asyncapi > docs/asyncapi.json`; a test keeps them equal).
"""

import copy
import json
from datetime import UTC, datetime
from functools import cache
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from starlette.responses import Response

from user_service import __version__
from user_service.application.read_models import UserView
from user_service.domain.events import USER_EVENTS, UserCreated, UserDeleted, UserEvent, UsernameChanged
from user_service.infrastructure.outbox import envelope, relay
from user_service.presentation.http.schemas import UserOut

ASYNCAPI = "3.0.0"
AMQP_BINDINGS = "0.3.0"
TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_EXAMPLE_USER = UUID("0192f1c4-7a3b-7c3d-8e9f-0123456789ab")
_EXAMPLE_TIME = datetime(2026, 11, 26, 17, 4, 26, 123456, tzinfo=UTC)


def event_types() -> list[type[UserEvent]]:
    """Every event a user records, in the order of a user's life."""
    return list(USER_EVENTS)


def _name(event: type[UserEvent]) -> str:
    """`userCreated` for `UserCreated`: the message's key in the document."""
    return event.__name__[0].lower() + event.__name__[1:]


def _data_schema(event: type[UserEvent]) -> dict[str, Any]:
    """The schema of `event`'s data: the API's schema of a user, as a deleted or a live user."""
    user = UserOut.model_json_schema()
    properties = copy.deepcopy(user["properties"])
    properties["id"]["pattern"] = envelope.UUID_PATTERN
    required = list(user["required"])
    if event is UserDeleted:
        del properties["username"]
        properties["deleted"] = {**properties["deleted"], "const": True}
    else:
        required.insert(1, "username")
        properties["deleted"] = {**properties["deleted"], "const": False}
    return {
        "$id": envelope.dataschema(event.type),
        "title": f"{event.__name__} data",
        "description": "The user after the change, exactly as the HTTP API shows it "
        "(GET /users/{id}); absent values are omitted, never null.",
        "type": "object",
        "required": required,
        "properties": properties,
    }


def _example(event: type[UserEvent]) -> dict[str, Any]:
    """An envelope as the outbox writes it, built by `cloud_event` itself."""
    version = event_types().index(event) + 1
    fields: dict[str, Any] = {"old": "alice", "new": "alicia"} if event is UsernameChanged else {}
    made = event(user_id=_EXAMPLE_USER, version=version, event_id=UUID(int=version), **fields)
    user = UserView(
        id=_EXAMPLE_USER,
        username="alice" if event is UserCreated else "alicia",
        first_name="Alice",
        last_name="Smith" if event in (UserCreated, UsernameChanged) else "Jones",
        middle_name=None,
        deleted=event is UserDeleted,
        version=version,
    )
    example: dict[str, Any] = json.loads(envelope.cloud_event(made, user, _EXAMPLE_TIME))
    return example


def _message(event: type[UserEvent]) -> dict[str, Any]:
    summary = (event.__doc__ or "").strip()
    return {
        "name": event.type,
        "title": event.type,
        "summary": summary,
        "description": (
            f"{summary} Published to the `{relay.EXCHANGE}` exchange with the routing key `{event.type}` "
            "once the change committed (a transactional outbox). AMQP properties: `message_id` = the "
            f"event's `id`, `content_type` `{envelope.CONTENT_TYPE}`, `type` = the event type, `app_id` "
            f"`{envelope.SOURCE}`, `timestamp`, persistent delivery; the `traceparent` header continues "
            "the trace of the request that made the change."
        ),
        "contentType": envelope.CONTENT_TYPE,
        "headers": {
            "type": "object",
            "properties": {
                "traceparent": {
                    "type": "string",
                    "pattern": TRACEPARENT,
                    "description": "W3C trace context of the publish, a child of the request's span.",
                }
            },
        },
        "payload": {"$ref": f"#/components/schemas/{event.__name__}Event"},
        "bindings": {"amqp": {"messageType": event.type, "bindingVersion": AMQP_BINDINGS}},
        "examples": [
            {
                "name": event.type,
                "summary": f"A {event.type} envelope, as the service publishes it.",
                "headers": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
                "payload": _example(event),
            }
        ],
    }


@cache
def document() -> dict[str, Any]:
    events = event_types()
    channel = "users"
    return {
        "asyncapi": ASYNCAPI,
        "info": {
            "title": "User Service events",
            "version": __version__,
            "description": (
                "The events the user service publishes, one per change of a user, as CloudEvents 1.0 "
                f"JSON envelopes (structured mode) on the RabbitMQ topic exchange `{relay.EXCHANGE}`, "
                "routed by event type.\n\n"
                "- **Delivery** is at least once: an event may arrive twice (de-duplicate on `id`), never "
                "zero times; every committed change is published, nothing that did not commit.\n"
                "- **Order**: the events of one user reach the broker in commit order, and carry the "
                "user's version as the CloudEvents `sequence` (1, 2, 3, … zero-padded), so a consumer "
                "orders and de-duplicates them without the broker's help: an event whose `sequence` is "
                "not above the last one applied for its `subject` is a duplicate or stale.\n"
                "- **data** is the user after the change, exactly as the HTTP API returns it, and "
                "`dataschema` names its schema (the `$id` of a schema below)."
            ),
            "contact": {"name": "User Service maintainers"},
            "tags": [{"name": "users", "description": "Changes of users."}],
        },
        "defaultContentType": envelope.CONTENT_TYPE,
        "servers": {
            "rabbitmq": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "The broker BROKER_URL names (here its local default).",
            }
        },
        "channels": {
            channel: {
                "address": "{eventType}",
                "title": f"The {relay.EXCHANGE} exchange",
                "description": (
                    f"The `{relay.EXCHANGE}` topic exchange (durable, declared by the service); the routing "
                    "key is the event type. Bind a queue with `user.#` for every event, or an event type for "
                    "one."
                ),
                "parameters": {
                    "eventType": {
                        "enum": [event.type for event in events],
                        "description": "The routing key: the event type.",
                        "location": "$message.payload#/type",
                    }
                },
                "messages": {_name(e): {"$ref": f"#/components/messages/{_name(e)}"} for e in events},
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {
                            "name": relay.EXCHANGE,
                            "type": relay.EXCHANGE_TYPE.value,
                            "durable": True,
                            "autoDelete": False,
                            "vhost": "/",
                        },
                        "bindingVersion": AMQP_BINDINGS,
                    }
                },
            }
        },
        "operations": {
            f"publish{event.__name__}": {
                "action": "send",
                "title": f"Publish {event.type}",
                "summary": (event.__doc__ or "").strip(),
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{_name(event)}"}],
                "bindings": {
                    "amqp": {
                        "cc": [event.type],
                        "deliveryMode": int(relay.DELIVERY_MODE),
                        "timestamp": True,
                        "bindingVersion": AMQP_BINDINGS,
                    }
                },
            }
            for event in events
        },
        "components": {
            "messages": {_name(e): _message(e) for e in events},
            "schemas": {
                **{
                    f"{e.__name__}Event": envelope.envelope_schema(
                        e, {"$ref": f"#/components/schemas/{e.__name__}Data"}
                    )
                    for e in events
                },
                **{f"{e.__name__}Data": _data_schema(e) for e in events},
            },
        },
    }


def render() -> str:
    """The document as docs/asyncapi.json holds it."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


router = APIRouter()


@router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi_document() -> Response:
    return Response(_compact(), media_type="application/json")


@cache
def _compact() -> bytes:
    return json.dumps(document(), ensure_ascii=False, separators=(",", ":")).encode()


if __name__ == "__main__":
    print(render(), end="")  # the command that regenerates docs/asyncapi.json
