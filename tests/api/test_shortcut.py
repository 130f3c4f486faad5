"""The plain `GET /users/{id}` answered by presentation.http.shortcuts is the answer FastAPI's route gives:
the same status, body and headers (the request id aside), for a user, a deleted user, an unknown id and a
database that is down."""

import uuid

import httpx
from fastapi import FastAPI

from user_service.application.errors import StorageCause, StorageUnavailable
from user_service.presentation.http.shortcuts import UserByIdShortcut

ALICE = {"username": "alice", "first_name": "Alice", "last_name": "Smith", "middle_name": "Lee"}


def comparable(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k != "x-request-id"}
    return response.status_code, response.content, headers


async def both(client: httpx.AsyncClient, uid: str) -> tuple[httpx.Response, httpx.Response]:
    """The shortcut's answer (canonical id) and FastAPI's (the same id in upper case)."""
    return await client.get(f"/users/{uid}"), await client.get(f"/users/{uid.upper()}")


async def test_the_shortcut_answers_as_the_route(client: httpx.AsyncClient) -> None:
    created = await client.post("/users/", json=ALICE)
    uid = created.json()["id"]
    short, routed = await both(client, uid)
    assert short.status_code == 200
    assert comparable(short) == comparable(routed)
    assert short.headers["etag"] == created.headers["etag"]
    assert (await client.delete(f"/users/{uid}")).status_code == 200
    short, routed = await both(client, uid)
    assert short.json()["deleted"] is True
    assert comparable(short) == comparable(routed)
    head = await client.head(f"/users/{uid}")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == short.headers["etag"]


async def test_an_unknown_id_is_the_routes_404_problem(client: httpx.AsyncClient) -> None:
    uid = str(uuid.uuid4())
    short, routed = await both(client, uid)
    assert short.status_code == 404
    assert short.headers["content-type"] == "application/problem+json"
    body, other = short.json(), routed.json()
    assert body.pop("instance") == f"/users/{uid}"
    assert other.pop("instance") == f"/users/{uid.upper()}"
    assert body.pop("request_id") != other.pop("request_id")
    assert body == {**other, "detail": body["detail"]}
    assert body["detail"].lower() == other["detail"].lower()


async def test_conditions_and_other_forms_go_to_fastapi(client: httpx.AsyncClient) -> None:
    created = await client.post("/users/", json=ALICE)
    uid, tag = created.json()["id"], created.headers["etag"]
    assert (await client.get(f"/users/{uid}", headers={"If-None-Match": tag})).status_code == 304
    invalid = await client.get(f"/users/{uid}", headers={"X-Consistency-Token": "nope"})
    assert invalid.status_code == 422
    assert (await client.get(f"/users/{uid.replace('-', '')}")).status_code == 200
    assert (await client.get(f"/users/{uid}/")).status_code == 200  # the slash folded first
    assert (await client.get("/users/not-a-uuid-but-36-characters-long-x")).status_code == 422


async def test_a_storage_error_is_the_routes_503_problem(app: FastAPI, client: httpx.AsyncClient) -> None:
    class Down:
        async def __call__(self, _query: object) -> None:
            raise StorageUnavailable("down", StorageCause.UNREACHABLE)

    uid = str(uuid.uuid4())
    assert (await client.get(f"/users/{uid}")).status_code == 404  # the app's middleware stack is built
    layer = find_shortcut(app)
    saved = layer._handler
    layer._handler = Down()  # type: ignore[assignment]
    try:
        answer = await client.get(f"/users/{uid}")
    finally:
        layer._handler = saved
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == 503


def find_shortcut(app: FastAPI) -> UserByIdShortcut:
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, UserByIdShortcut):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, UserByIdShortcut)
    return layer
