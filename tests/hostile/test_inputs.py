"""Hostile input to the app in-process: oversized and endless bodies, JSON nested past any recursion
limit, huge query strings, invalid UTF-8 and NUL bytes everywhere. Each is a clean 4xx problem (never a
5xx), and the service keeps answering everyone else."""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from loadtest.problem import problem_errors
from tests.hostile.asgi import raw_request

JSON = {"content-type": "application/json"}
ALICE = {"username": "alice", "first_name": "Alice", "last_name": "Smith"}
MIB = 1024 * 1024
CLIENT_ERRORS = range(400, 500)


def problem_or_why(response: httpx.Response) -> list[str]:
    content_type = response.headers.get("content-type", "")
    return problem_errors(response.status_code, content_type, response.content, CLIENT_ERRORS)


async def still_serving(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthcheck")).status_code == 200
    created = await client.post("/users/", json={**ALICE, "username": f"ok{uuid.uuid4().hex[:8]}"})
    assert created.status_code == 201, created.text
    assert (await client.get(f"/users/{created.json()['id']}")).status_code == 200


def bodies_for(user_id: str) -> list[tuple[str, str]]:
    return [
        ("POST", "/users/"),
        ("PUT", f"/users/{user_id}/username"),
        ("PUT", f"/users/{user_id}/full-name"),
    ]


@pytest.mark.parametrize("size", [64 * 1024 + 1, MIB, 10 * MIB])
async def test_oversized_bodies_with_a_length_are_413(client: httpx.AsyncClient, size: int) -> None:
    user_id = (await client.post("/users/", json=ALICE)).json()["id"]
    body = b'{"username": "' + b"a" * size + b'"}'
    for method, path in bodies_for(user_id):
        response = await client.request(method, path, content=body, headers=JSON)
        assert response.status_code == 413, (method, path, response.text)
        assert problem_or_why(response) == []
    # A declared length is refused before a byte of the body is read, whatever the body really is.
    lying = await client.post("/users/", content=b"{}", headers={**JSON, "content-length": str(10**12)})
    assert lying.status_code == 413
    await still_serving(client)


async def test_oversized_bodies_without_a_length_are_413(client: httpx.AsyncClient) -> None:
    user_id = (await client.post("/users/", json=ALICE)).json()["id"]

    async def endless() -> AsyncIterator[bytes]:
        yield b'{"username": "'
        for _ in range(16 * 10):  # 10 MiB in 64 KiB chunks, stopped long before the end
            yield b"a" * 65536

    for method, path in bodies_for(user_id):
        response = await client.request(method, path, content=endless(), headers=JSON)
        assert "content-length" not in response.request.headers
        assert response.status_code == 413, (method, path, response.text)
        assert problem_or_why(response) == []
    await still_serving(client)


NESTED = {
    "100k nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "30k nested arrays (under the size limit)": b"[" * 30_000 + b"]" * 30_000,
    "12k nested objects": b'{"a":' * 12_000 + b"1" + b"}" * 12_000,
    "nested arrays as a field": b'{"username": ' + b"[" * 25_000 + b"]" * 25_000 + b"}",
    "unclosed nesting": b"[" * 60_000,
}


@pytest.mark.parametrize("body", NESTED.values(), ids=NESTED.keys())
async def test_deeply_nested_json_is_a_clean_4xx(client: httpx.AsyncClient, body: bytes) -> None:
    user_id = (await client.post("/users/", json=ALICE)).json()["id"]
    for method, path in bodies_for(user_id):
        response = await client.request(method, path, content=body, headers=JSON)
        assert problem_or_why(response) == [], (method, path, response.text)
    await still_serving(client)


# Input the contract calls invalid: "422 ... any invalid input".
UNDECODABLE = {
    "nesting past the parser's recursion limit": b"[" * 30_000 + b"]" * 30_000,
    "invalid UTF-8 inside a string": b'{"username": "al\xffice", "first_name": "A", "last_name": "B"}',
    "invalid UTF-8 in a key": b'{"user\xc3name": "alice", "first_name": "A", "last_name": "B"}',
    "a lone UTF-8 continuation byte": b'{"username": "alice", "first_name": "\x80", "last_name": "B"}',
    "an integer of 5000 digits": b'{"username": "alice", "first_name": "A", "last_name": "B", "user_id": 1'
    + b"0" * 5000
    + b"}",
}


@pytest.mark.parametrize("body", UNDECODABLE.values(), ids=UNDECODABLE.keys())
async def test_undecodable_json_is_422_as_the_contract_says(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/users/", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "urn:user-service:problem:validation-error"


@pytest.mark.parametrize(
    ("query", "statuses"),
    [
        (b"x=" + b"A" * 100_000, {200}),  # unknown parameters are ignored
        (b"&".join([b"limit=1"] * 10_000), {200, 422}),
        (b"&".join(b"p%d=%d" % (i, i) for i in range(20_000)), {200}),
        (b"order=" + b"A" * 100_000, {422}),
        (b"offset=" + b"9" * 100_000, {422}),
        (b"deleted=" + b"%FF" * 30_000, {422}),
        (b"limit=%00" + b"1" * 100_000, {422}),
    ],
    ids=[
        "100k unknown",
        "10k repeats",
        "20k parameters",
        "100k order",
        "100k digits",
        "90k bad utf-8",
        "nul",
    ],
)
async def test_huge_query_strings_are_answered_cleanly(
    app: FastAPI, client: httpx.AsyncClient, query: bytes, statuses: set[int]
) -> None:
    response = await raw_request(app, "GET", "/users/", query=query)
    assert response.status in statuses, (response.status, response.body[:300])
    if response.status >= 400:
        content_type = response.headers["content-type"]
        assert problem_errors(response.status, content_type, response.body, CLIENT_ERRORS) == []
    await still_serving(client)


async def test_invalid_utf8_anywhere_is_a_clean_4xx(app: FastAPI, client: httpx.AsyncClient) -> None:
    user_id = (await client.post("/users/", json=ALICE)).json()["id"]
    for path in ("/users/%FF%FE", "/users/@al%FFice", f"/users/{user_id}%C3/username"):
        response = await client.get(path)
        assert problem_or_why(response) == [], (path, response.text)
    for method, path in bodies_for(user_id):
        body = b'{"username": "\xed\xa0\x80", "first_name": "\xc0\xaf", "last_name": "\xf8\x88\x80\x80\x80"}'
        response = await client.request(method, path, content=body, headers=JSON)
        assert problem_or_why(response) == [], (method, path, response.text)
    weird = await raw_request(app, "GET", "/users/", headers=[(b"x-request-id", b"\xff\xfe\x00")])
    assert weird.status == 200
    assert len(weird.headers["x-request-id"]) == 32  # replaced by a fresh id
    await still_serving(client)


NUL = "\x00"


async def test_nul_bytes_in_every_string_field_are_422(client: httpx.AsyncClient) -> None:
    user_id = (await client.post("/users/", json=ALICE)).json()["id"]
    create = {**ALICE, "username": "bob", "middle_name": "Ann"}
    full_name = {"first_name": "Bob", "last_name": "Smith", "middle_name": "Ann"}
    cases = [("POST", "/users/", {**create, field: create[field] + NUL}, field) for field in create]
    cases += [("POST", "/users/", {**create, field: NUL}, field) for field in create]
    cases += [("POST", "/users/", {**create, "user_id": f"{uuid.uuid4()}{NUL}"}, "user_id")]
    cases += [("PUT", f"/users/{user_id}/username", {"username": f"bo{NUL}b"}, "username")]
    cases += [
        ("PUT", f"/users/{user_id}/full-name", {**full_name, field: f"Bo{NUL}b"}, field)
        for field in full_name
    ]
    for method, path, body, field in cases:
        response = await client.request(method, path, json=body)
        assert response.status_code == 422, (method, path, body, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], (field, response.text)
    assert (await client.get(f"/users/{user_id}")).json()["username"] == "alice"


@pytest.mark.parametrize("value", ["%00", "a%00", "%00a", "alice%00", f"{uuid.UUID(int=0)}%00"])
async def test_nul_bytes_in_every_path_parameter_are_422(client: httpx.AsyncClient, value: str) -> None:
    requests = [
        ("GET", f"/users/{value}", None),
        ("DELETE", f"/users/{value}", None),
        ("PUT", f"/users/{value}/username", {"username": "bob"}),
        ("PUT", f"/users/{value}/full-name", {"first_name": "Bob", "last_name": "Smith"}),
        ("GET", f"/users/@{value}", None),
    ]
    for method, path, body in requests:
        response = await client.request(method, path, json=body)
        assert response.status_code == 422, (method, path, response.text)
        assert problem_or_why(response) == []
    await still_serving(client)
