"""Idempotent creates (draft-ietf-httpapi-idempotency-key-header): a retry with the same key and body is
answered as the first request was and creates nothing; the same key with another body is a 422; requests
racing with one key create one user."""

import asyncio
import uuid

import httpx
import pytest

from tests.api.test_errors import assert_problem
from user_service.infrastructure.db.database import Database
from user_service.presentation.http.idempotency_key import MESSAGE

ALICE = {"username": "alice", "first_name": "Alice", "last_name": "Smith"}


def key() -> str:
    return f'"{uuid.uuid4()}"'


async def rows(db: Database) -> tuple[int, list[str]]:
    async with db.connection() as conn:
        users = await conn.fetchval("SELECT count(*) FROM users")
        events = [r["type"] for r in await conn.fetch("SELECT type FROM outbox ORDER BY position")]
    return users, events


def answer(response: httpx.Response) -> tuple[int, bytes, str | None, str | None]:
    return response.status_code, response.content, response.headers.get("location"), response.headers["etag"]


async def test_a_retry_is_answered_as_the_first_request_and_creates_nothing(
    client: httpx.AsyncClient, clean_db: Database
) -> None:
    headers = {"idempotency-key": key()}
    first = await client.post("/users/", json=ALICE, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/users/", json=ALICE, headers=headers)
    assert answer(again) == answer(first)
    # Even after the user changed: the answer to that request, not the user now.
    await client.put(first.headers["location"] + "/username", json={"username": "bob"})
    later = await client.post("/users/", json=ALICE, headers=headers)
    assert answer(later) == answer(first)
    assert await rows(clean_db) == (1, ["user.created", "user.username_changed"])


async def test_the_same_key_with_another_body_is_422_and_creates_nothing(
    client: httpx.AsyncClient, clean_db: Database
) -> None:
    headers = {"idempotency-key": key()}
    assert (await client.post("/users/", json=ALICE, headers=headers)).status_code == 201
    for body in (
        {**ALICE, "username": "carol"},
        {**ALICE, "middle_name": "Ann"},
        {**ALICE, "user_id": str(uuid.uuid4())},
    ):
        problem = assert_problem(await client.post("/users/", json=body, headers=headers), 422)
        assert problem["type"] == "urn:user-service:problem:idempotency-key-reused"
    assert await rows(clean_db) == (1, ["user.created"])


async def test_keys_are_distinct_requests_and_a_create_without_a_key_is_as_before(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/users/", json=ALICE, headers={"idempotency-key": key()})).status_code == 201
    other = await client.post("/users/", json=ALICE, headers={"idempotency-key": key()})
    assert assert_problem(other, 409)["type"] == "urn:user-service:problem:username-taken"
    assert_problem(await client.post("/users/", json=ALICE), 409)
    # Escapes are part of the key: these are two keys.
    for name, value in (("quote", r'"a\"b"'), ("backslash", r'"a\\b"')):
        created = await client.post(
            "/users/", json={**ALICE, "username": name}, headers={"idempotency-key": value}
        )
        assert created.status_code == 201, created.text


async def test_a_create_that_failed_left_no_key_and_its_retry_runs_anew(client: httpx.AsyncClient) -> None:
    holder = (await client.post("/users/", json=ALICE)).json()
    headers = {"idempotency-key": key()}
    assert_problem(await client.post("/users/", json=ALICE, headers=headers), 409)
    await client.delete(f"/users/{holder['id']}")  # the username is free again
    retry = await client.post("/users/", json=ALICE, headers=headers)
    assert retry.status_code == 201
    assert retry.json()["id"] != holder["id"]


async def test_an_expired_key_is_free_again(client: httpx.AsyncClient, clean_db: Database) -> None:
    headers = {"idempotency-key": key()}
    first = await client.post("/users/", json=ALICE, headers=headers)
    async with clean_db.connection() as conn:
        await conn.execute("UPDATE idempotency_keys SET expires_at = clock_timestamp() - interval '1 second'")
    reused = await client.post("/users/", json={**ALICE, "username": "carol"}, headers=headers)
    assert reused.status_code == 201, reused.text  # a new request, not a 422
    assert reused.json()["id"] != first.json()["id"]
    assert answer(
        await client.post("/users/", json={**ALICE, "username": "carol"}, headers=headers)
    ) == answer(reused)


@pytest.mark.parametrize(
    "value",
    [
        '""',
        "plain",
        '"unterminated',
        '"a"b"',
        '"a";p=1',
        '"a", "b"',
        '"tab\there"',
        r'"bad\escape"',
        '"' + "k" * 256 + '"',
        '"ü"',
    ],
)
async def test_a_key_that_is_no_structured_string_is_422(
    client: httpx.AsyncClient, clean_db: Database, value: str
) -> None:
    response = await client.post("/users/", json=ALICE, headers={"idempotency-key": value.encode("latin-1")})
    problem = assert_problem(response, 422)
    assert problem["errors"] == [  # type: ignore[comparison-overlap]
        {"field": "Idempotency-Key", "location": "header", "pointer": "#/Idempotency-Key", "message": MESSAGE}
    ]
    assert await rows(clean_db) == (0, [])


async def test_the_longest_key_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/users/", json=ALICE, headers={"idempotency-key": '"' + "k" * 255 + '"'})
    assert response.status_code == 201


@pytest.mark.parametrize("with_id", [False, True])
async def test_racing_requests_with_one_key_create_one_user_and_all_get_its_answer(
    client: httpx.AsyncClient, clean_db: Database, with_id: bool
) -> None:
    body = {**ALICE, "user_id": str(uuid.uuid4())} if with_id else ALICE
    headers = {"idempotency-key": key()}
    responses = await asyncio.gather(*(client.post("/users/", json=body, headers=headers) for _ in range(20)))
    assert {answer(r) for r in responses} == {answer(responses[0])}
    assert responses[0].status_code == 201
    assert await rows(clean_db) == (1, ["user.created"])


async def test_racing_requests_with_one_key_and_other_bodies_create_one_user(
    client: httpx.AsyncClient, clean_db: Database
) -> None:
    headers = {"idempotency-key": key()}
    bodies = [{**ALICE, "username": f"racer{i}"} for i in range(20)]
    responses = await asyncio.gather(*(client.post("/users/", json=b, headers=headers) for b in bodies))
    assert sorted(r.status_code for r in responses) == [201] + [422] * 19
    assert await rows(clean_db) == (1, ["user.created"])
