"""Real events, published by the relay and consumed from RabbitMQ, are what the AsyncAPI document says:
each envelope valid by its message's payload schema, its headers by the headers schema, its AMQP routing
key, type, content type and delivery mode those of its message and operation."""

import json

import pytest

from tests.broker.test_outbox import outbox_drained, running_app
from tests.contracts.asyncapi import message_of, resolve, violations
from tests.support.broker import Consumer
from user_service.infrastructure.db.database import Database
from user_service.presentation.http.asyncapi import document

pytestmark = pytest.mark.broker


async def test_published_events_are_valid_by_the_asyncapi_document(
    clean_db: Database, database_url: str, broker_url: str, consumer: Consumer
) -> None:
    async with running_app(database_url, broker_url) as client:
        body = {"username": "alice", "first_name": "Alice", "last_name": "Smith", "middle_name": "Ann"}
        created = await client.post("/users/", json=body, headers={"idempotency-key": '"contract"'})
        user_id = created.json()["id"]
        location = created.headers["location"]
        await client.put(location + "/username", json={"username": "alicia"})
        await client.put(location + "/full-name", json={"first_name": "Alicia", "last_name": "Jones"})
        await client.delete(location, headers={"if-match": "*"})
        await consumer.wait_for(4, {user_id})
        await outbox_drained(clean_db)
    operations = {op["bindings"]["amqp"]["cc"][0]: op for op in document()["operations"].values()}
    messages = [m for m in consumer.messages if json.loads(m.body)["subject"] == user_id]
    assert [m.routing_key for m in messages] == [
        "user.created",
        "user.username_changed",
        "user.full_name_changed",
        "user.deleted",
    ]
    for message in messages:
        assert message.routing_key is not None
        _, contract = message_of(message.routing_key)
        envelope = json.loads(message.body)
        assert violations(contract["payload"], envelope) == [], message.routing_key
        assert set(envelope) == set(resolve(contract["payload"])["properties"])
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in (message.headers or {}).items()}
        assert violations(contract["headers"], headers) == []
        assert message.content_type == contract["contentType"]
        assert message.type == contract["bindings"]["amqp"]["messageType"] == envelope["type"]
        assert message.message_id == envelope["id"]
        assert message.delivery_mode == operations[message.routing_key]["bindings"]["amqp"]["deliveryMode"]
        assert message.timestamp is not None
    assert [json.loads(m.body)["sequence"] for m in messages] == [f"{v:010d}" for v in (1, 2, 3, 4)]
