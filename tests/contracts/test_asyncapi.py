"""The AsyncAPI document of the events: valid by the AsyncAPI initiative's own parser, committed as
produced, served, and made from the code that makes the messages (every envelope that code builds is
valid by it)."""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from tests.contracts.asyncapi import message_of, resolve, violations
from tests.contracts.speccheck import asyncapi_diagnostics
from user_service.application.read_models import UserView
from user_service.domain.events import USER_EVENTS, UserEvent
from user_service.infrastructure.outbox import envelope, relay
from user_service.presentation.http.asyncapi import document, render

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
REGENERATE = "uv run python -m user_service.presentation.http.asyncapi > docs/asyncapi.json"


def test_the_committed_document_is_the_one_the_code_produces() -> None:
    assert COMMITTED.read_text() == render(), f"docs/asyncapi.json is stale: {REGENERATE}"


async def test_the_document_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == document()


def test_the_asyncapi_parser_finds_no_error_and_no_warning() -> None:
    result = asyncapi_diagnostics(COMMITTED)
    assert result["parsed"], result
    serious = [d for d in result["diagnostics"] if d["severity"] <= 1]
    assert serious == [], json.dumps(serious, indent=1)
    # What is left is information, e.g. that a newer AsyncAPI version than 3.0 exists.
    assert {d["code"] for d in result["diagnostics"]} <= {"asyncapi-latest-version"}


def test_the_document_lists_every_event_on_the_relays_exchange() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    # Every event class the domain declares (dataclass slots make a second class per event: by name).
    declared = {cls.type for cls in UserEvent.__subclasses__()}
    assert declared == {e.type for e in USER_EVENTS}
    channel = doc["channels"]["users"]
    assert channel["parameters"]["eventType"]["enum"] == [e.type for e in USER_EVENTS]
    exchange = channel["bindings"]["amqp"]["exchange"]
    assert (exchange["name"], exchange["type"], exchange["durable"]) == (relay.EXCHANGE, "topic", True)
    routing_keys = [op["bindings"]["amqp"]["cc"] for op in doc["operations"].values()]
    assert routing_keys == [[e.type] for e in USER_EVENTS]
    for event in USER_EVENTS:
        _, message = message_of(event.type)
        assert message["contentType"] == envelope.CONTENT_TYPE
        assert message["bindings"]["amqp"]["messageType"] == event.type
        payload = resolve(message["payload"])
        assert payload["properties"]["type"] == {
            "const": event.type,
            "description": payload["properties"]["type"]["description"],
        }
        data = resolve(payload["properties"]["data"])
        assert data["$id"] == payload["properties"]["dataschema"]["const"] == envelope.dataschema(event.type)


def test_every_example_is_valid_by_its_message() -> None:
    for event in USER_EVENTS:
        _, message = message_of(event.type)
        for example in message["examples"]:
            assert violations(message["payload"], example["payload"]) == []
            assert violations(message["headers"], example["headers"]) == []


names = st.from_regex(r"[A-Za-z][A-Za-z' .-]{0,20}", fullmatch=True)
views = st.builds(
    UserView,
    id=st.uuids(),
    username=st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,31}", fullmatch=True),
    first_name=names,
    last_name=names,
    middle_name=st.none() | names,
    deleted=st.booleans(),
    version=st.integers(1, 2**31 - 1),
)


@given(views, st.sampled_from(USER_EVENTS), st.datetimes(timezones=st.just(UTC)))
def test_every_envelope_the_outbox_writes_is_valid_by_the_document(
    view: UserView, event_type: type[UserEvent], time: datetime
) -> None:
    view = view._replace(deleted=event_type.type == "user.deleted")
    fields: dict[str, Any] = {"old": "a", "new": "b"} if event_type.type == "user.username_changed" else {}
    event = event_type(user_id=view.id, version=view.version, **fields)
    built = json.loads(envelope.cloud_event(event, view, time))
    _, message = message_of(event.type)
    assert violations(message["payload"], built) == []
    assert set(built) == set(resolve(message["payload"])["properties"])  # no attribute undocumented
    assert set(built["data"]) <= set(resolve(resolve(message["payload"])["properties"]["data"])["properties"])
    assert built["sequence"] == f"{view.version:010d}"


def test_an_envelope_that_breaks_the_contract_is_caught() -> None:
    _, message = message_of("user.created")
    good = message["examples"][0]["payload"]
    for bad in (
        {**good, "type": "user.deleted"},
        {**good, "sequence": "7"},
        {**good, "data": {**good["data"], "deleted": True}},
        {k: v for k, v in good.items() if k != "dataschema"},
        {**good, "subject": "not-a-uuid"},
        {**good, "data": {k: v for k, v in good["data"].items() if k != "username"}},
    ):
        assert violations(message["payload"], bad), bad
    assert uuid.UUID(good["id"])
