"""The plain reads answered by presentation.http.shortcuts are the answers FastAPI's routes give: the same
status, body and headers (the request id aside), for a user, a deleted user, an unknown id, a page and a
database that is down."""

import uuid

import httpx
from fastapi import FastAPI

from user_service.application.errors import StorageCause, StorageUnavailable
from user_service.application.queries.get_user import GetUserHandler
from user_service.presentation.http.shortcuts import UserReadShortcuts

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
    saved = layer._handlers[GetUserHandler]
    layer._handlers[GetUserHandler] = Down()
    try:
        answer = await client.get(f"/users/{uid}")
    finally:
        layer._handlers[GetUserHandler] = saved
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == 503


def find_shortcut(app: FastAPI) -> UserReadShortcuts:
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, UserReadShortcuts):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, UserReadShortcuts)
    return layer


async def test_a_plain_page_is_the_routes_page(client: httpx.AsyncClient) -> None:
    for n in range(5):
        assert (await client.post("/users/", json={**ALICE, "username": f"user{n}"})).status_code == 201
    for limit in ("2", "5", "1000"):
        short = await client.get(f"/users/?limit={limit}")
        routed = await client.get(f"/users/?limit={limit}&order=asc")  # the same page, through FastAPI
        assert short.status_code == 200
        assert short.content == routed.content
        short_headers, routed_headers = comparable(short)[2], comparable(routed)[2]
        assert short_headers == routed_headers
    plain = await client.get("/users/")
    assert [u["username"] for u in plain.json()["users"]] == [f"user{n}" for n in range(5)]
    assert "link" not in plain.headers
    following = (await client.get("/users/?limit=2")).headers["link"]
    assert following.startswith("</users/?limit=2&order=asc&after=")
    for query in ("limit=0", "limit=1001", "limit=x", "limit=2&offset=-1"):
        assert (await client.get(f"/users/?{query}")).status_code == 422, query
    # Written otherwise, the limit is FastAPI's to read, as before.
    assert (await client.get("/users/?limit=01")).content == (await client.get("/users/?limit=1")).content
    assert (await client.head("/users/?limit=2")).content == b""
