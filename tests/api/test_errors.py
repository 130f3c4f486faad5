"""Every error answer is RFC 9457 problem details; bad input is 422, never 500."""

import re
import uuid

import httpx
import pytest
from fastapi import FastAPI

from loadtest.problem import problem_errors

ALICE = {"username": "alice", "first_name": "Alice", "last_name": "Smith"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    content_type = response.headers.get("content-type", "")
    assert problem_errors(response.status_code, content_type, response.content, status) == [], response.text
    return response.json()  # type: ignore[no-any-return]


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nowhere"), 404)
    assert_problem(await client.get("/users/a/b/c"), 404)


async def test_wrong_method_is_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.patch("/users/")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_body_over_64_kib_is_413(client: httpx.AsyncClient) -> None:
    body = b'{"username": "a", "first_name": "' + b"x" * 70_000 + b'", "last_name": "b"}'
    response = await client.post("/users/", content=body, headers={"content-type": "application/json"})
    assert_problem(response, 413)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ALICE, "username": "1abc"}, "username"),
        ({**ALICE, "username": "a" * 33}, "username"),
        ({**ALICE, "username": ""}, "username"),
        ({**ALICE, "username": 42}, "username"),
        ({**ALICE, "username": None}, "username"),
        ({**ALICE, "first_name": "   "}, "first_name"),
        ({**ALICE, "first_name": "Ann1"}, "first_name"),
        ({**ALICE, "last_name": "x" * 65}, "last_name"),
        ({**ALICE, "last_name": "---"}, "last_name"),
        ({**ALICE, "middle_name": "😀"}, "middle_name"),
        ({**ALICE, "first_name": "An\u0000n"}, "first_name"),
        ({**ALICE, "username": "al\u0000ice"}, "username"),
        ({**ALICE, "user_id": "not-a-uuid"}, "user_id"),
        ({**ALICE, "extra": 1}, "extra"),
        ({"first_name": "A", "last_name": "B"}, "username"),
    ],
)
async def test_invalid_create_is_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    problem = assert_problem(await client.post("/users/", json=body), 422)
    errors = {e["field"]: e for e in problem["errors"]}  # type: ignore[attr-defined]
    assert field in errors
    assert errors[field]["location"] == "body"
    assert errors[field]["pointer"] == f"#/{field}"


async def test_each_error_points_at_its_value_as_rfc_9457_does(client: httpx.AsyncClient) -> None:
    body = {**ALICE, "username": "1abc", "a/b~c d": 1}
    problem = assert_problem(await client.post("/users/", json=body), 422)
    pointers = {e["pointer"] for e in problem["errors"]}  # type: ignore[attr-defined]
    assert pointers == {"#/username", "#/a~1b~0c%20d"}
    for error in problem["errors"]:  # type: ignore[attr-defined]
        assert set(error) == {"field", "location", "pointer", "message"}
    # The domain's own rules (a name of digits only passes the schema's pattern, not the domain).
    domain = assert_problem(await client.post("/users/", json={**ALICE, "last_name": "---"}), 422)
    assert domain["errors"] == [  # type: ignore[comparison-overlap]
        {
            "field": "last_name",
            "location": "body",
            "pointer": "#/last_name",
            "message": "must contain at least one letter",
        }
    ]
    query = assert_problem(await client.get("/users/?limit=0"), 422)
    assert query["errors"][0]["pointer"] == "#/limit"  # type: ignore[index]


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"not json",
        b"[]",
        b"null",
        b'{"username": "a"',
        b"\xff\xfe",
        b"",
        b'{"username": "\xff\xc3"}',
        b"8$\t\xe9k",
    ],
)
async def test_malformed_bodies_are_422(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/users/", content=raw, headers={"content-type": "application/json"})
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "body"  # type: ignore[index]
    assert problem["errors"][0]["pointer"] == "#"  # type: ignore[index]


async def test_invalid_path_values_are_422(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/users/not-a-uuid"), 422)
    assert_problem(await client.get("/users/@1bad"), 422)
    assert_problem(await client.put(f"/users/{uuid.uuid4()}/username", json={"username": "no way"}), 422)


async def test_request_id_is_echoed_when_sane_else_generated(client: httpx.AsyncClient) -> None:
    sane = await client.get("/healthcheck", headers={"x-request-id": "abc-123"})
    assert sane.headers["x-request-id"] == "abc-123"
    insane = await client.get("/healthcheck", headers={"x-request-id": "x" * 500})
    assert insane.headers["x-request-id"] != "x" * 500
    assert len(insane.headers["x-request-id"]) == 32
    missing = await client.get("/nowhere")
    assert missing.headers["x-request-id"] == missing.json()["request_id"]


async def test_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_unexpected_error_is_500_problem_without_internals(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from user_service.infrastructure.db.reader import PostgresUserReader

    async def broken(self: object, user_id: uuid.UUID) -> None:
        raise RuntimeError("SELECT secret FROM users -- password=hunter2")

    monkeypatch.setattr(PostgresUserReader, "get", broken)
    response = await client.get(f"/users/{uuid.uuid4()}", headers={"x-request-id": "trace-me"})
    problem = assert_problem(response, 500)
    assert problem["request_id"] == "trace-me"
    assert "SELECT" not in response.text
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text


async def test_openapi_lists_every_route_with_its_errors(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    expected = {
        ("/healthcheck", "get"),
        ("/users", "post"),
        ("/users", "get"),
        ("/users/{user_id}", "get"),
        ("/users/@{username}", "get"),
        ("/users/{user_id}/username", "put"),
        ("/users/{user_id}/full-name", "put"),
        ("/users/{user_id}", "delete"),
    }
    assert expected <= {(p, m) for p, ops in paths.items() for m in ops}
    assert {"409", "422"} <= set(paths["/users"]["post"]["responses"])
    assert "404" in paths["/users/{user_id}"]["get"]["responses"]
    docs = await client.get("/docs")
    assert docs.status_code == 200


async def test_swagger_ui_pulls_nothing_from_a_cdn(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs/")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources
    assert all(s.startswith("/docs/assets/") for s in sources), sources
    for source in sources:
        asset = await client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 100


async def test_chunked_body_over_64_kib_is_413(client: httpx.AsyncClient) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"username": "a", "first_name": "'
        for _ in range(10):
            yield b"x" * 10_000
        yield b'", "last_name": "b"}'

    response = await client.post("/users/", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)
