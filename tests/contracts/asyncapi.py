"""Holding messages to the AsyncAPI document: each message's payload and headers validated with
JSON Schema (draft 7, which AsyncAPI's schema format extends), `$ref`s resolved inside the document."""

from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from user_service.presentation.http.asyncapi import document

BASE = "urn:test:asyncapi"


def message_of(routing_key: str) -> tuple[str, dict[str, Any]]:
    """The document's message (its key and object) published with `routing_key`."""
    doc = document()
    for operation in doc["operations"].values():
        if routing_key in operation["bindings"]["amqp"]["cc"]:
            ref = operation["messages"][0]["$ref"].rsplit("/", 1)[-1]
            key = doc["channels"]["users"]["messages"][ref]["$ref"].rsplit("/", 1)[-1]
            return key, doc["components"]["messages"][key]
    raise AssertionError(f"no operation publishes with the routing key {routing_key!r}")


def validator(schema: dict[str, Any]) -> Draft7Validator:
    registry: Registry = Registry().with_resource(BASE, Resource(contents=document(), specification=DRAFT7))
    if "$ref" in schema:
        schema = {"$ref": BASE + schema["$ref"]}
    return Draft7Validator(schema, registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER)


def violations(schema: dict[str, Any], instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(schema).iter_errors(instance)
    ]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """A `$ref` into the document, followed."""
    while "$ref" in schema:
        node: Any = document()
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema
