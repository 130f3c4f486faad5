"""Bodies are JSON: sent as JSON, with no Content-Type, or as curl's default form type when the body is a
JSON object; anything else is a 415 problem naming application/json."""

import gzip
import uuid

import httpx
import pytest

from tests.api.test_errors import assert_problem

ALICE = b'{"username": "alice", "first_name": "Alice", "last_name": "Smith"}'
FORM = "application/x-www-form-urlencoded"


async def test_the_readme_example_works_verbatim(client: httpx.AsyncClient) -> None:
    # curl -X POST http://127.0.0.1:5000/users/ -d '{...}' sends the form content type.
    response = await client.post("/users/", content=ALICE, headers={"content-type": FORM})
    assert response.status_code == 201, response.text
    assert response.json()["username"] == "alice"
    renamed = await client.put(
        response.headers["location"] + "/username",
        content=b'{"username": "bob"}',
        headers={"content-type": FORM},
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["username"] == "bob"


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/json; charset=utf-8", "Application/JSON"]
)
async def test_json_with_or_without_a_content_type(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = await client.post("/users/", content=ALICE, headers=headers)
    assert response.status_code == 201, response.text


async def test_no_content_type_is_still_json_that_must_be_valid(client: httpx.AsyncClient) -> None:
    problem = assert_problem(await client.post("/users/", content=b"{"), 422)
    assert problem["errors"][0]["field"] == "body"  # type: ignore[index]
    assert_problem(await client.post("/users/", content=b""), 422)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", ALICE),
        ("application/xml", b"<user/>"),
        ("application/problem+json", ALICE),
        ("multipart/form-data; boundary=x", ALICE),
        (FORM, b"username=alice&first_name=Alice&last_name=Smith"),
        (FORM, b"[1, 2]"),
    ],
)
async def test_other_media_types_are_415_naming_json(
    client: httpx.AsyncClient, content_type: str, body: bytes
) -> None:
    response = await client.post("/users/", content=body, headers={"content-type": content_type})
    problem = assert_problem(response, 415)
    assert problem["type"] == "about:blank"
    assert problem["title"] == "Unsupported media type"
    assert "application/json" in problem["detail"]  # type: ignore[operator]
    assert response.headers["accept-post"] == "application/json"
    user_id = uuid.uuid4()
    put = await client.put(f"/users/{user_id}/username", content=body, headers={"content-type": content_type})
    assert "application/json" in assert_problem(put, 415)["detail"]  # type: ignore[operator]
    assert "accept-post" not in put.headers  # RFC 9110 has no such field for PUT
    assert (await client.get("/users/")).json() == {"users": []}


async def test_a_content_coding_is_415_with_accept_encoding(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/users/",
        content=gzip.compress(ALICE),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert_problem(response, 415)
    assert response.headers["accept-encoding"] == "identity"
    identity = await client.post(
        "/users/", content=ALICE, headers={"content-type": "application/json", "content-encoding": "identity"}
    )
    assert identity.status_code == 201


async def test_a_form_labelled_body_keeps_the_size_limit(client: httpx.AsyncClient) -> None:
    body = b'{"username": "a", "first_name": "' + b"x" * 70_000 + b'", "last_name": "b"}'
    assert_problem(await client.post("/users/", content=body, headers={"content-type": FORM}), 413)

    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"username": "a", "first_name": "'
        for _ in range(10):
            yield b"x" * 10_000
        yield b'"}'

    assert_problem(await client.post("/users/", content=chunks(), headers={"content-type": FORM}), 413)
    assert_problem(await client.post("/users/", content=chunks()), 413)


async def test_routes_without_a_body_ignore_the_content_type(client: httpx.AsyncClient) -> None:
    created = await client.post("/users/", content=ALICE, headers={"content-type": FORM})
    user_id = created.json()["id"]
    response = await client.request("DELETE", f"/users/{user_id}", headers={"content-type": "text/plain"})
    assert response.status_code == 200
    assert (await client.get("/users/", headers={"content-type": "text/plain"})).status_code == 200
