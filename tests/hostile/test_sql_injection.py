"""SQL injection in every string field, path parameter and query parameter goes nowhere: what the rules
refuse is a 422, what they accept is stored and returned verbatim, and the tables keep all their rows."""

import uuid
from urllib.parse import quote

import httpx
import pytest

from loadtest.problem import PROBLEM_JSON
from user_service.domain.errors import InvalidValue
from user_service.domain.values import Name
from user_service.infrastructure.db.database import Database

PAYLOADS = [
    "'; DROP TABLE users; --",
    "' OR '1'='1",
    "' OR 1=1 --",
    '" OR ""="',
    "admin'--",
    "1; DELETE FROM users",
    "'); TRUNCATE users, outbox; --",
    "' UNION SELECT id, username, first_name, last_name, middle_name, true FROM users --",
    "1' AND pg_sleep(5) IS NULL --",
    "$1",
    "%' OR username LIKE '%",
    "\\'; DROP TABLE outbox; --",
    "';COPY users TO PROGRAM 'id'--",
    "x' OR 'x'--",  # letters, quotes, spaces and hyphens only: a valid name
    "Robert' -- ",  # valid too
    "O'Brien'); DROP TABLE users;--",
]
SEEDED = 20


def is_valid_name(value: str) -> bool:
    try:
        Name(value)
    except InvalidValue:
        return False
    return True


def assert_answer(response: httpx.Response, valid: bool, success: int) -> None:
    if valid:
        assert response.status_code == success, response.text
    else:
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM_JSON


async def table_counts(db: Database) -> tuple[int, int]:
    async with db.connection() as conn:
        users = await conn.fetchval("SELECT count(*) FROM users")
        outbox = await conn.fetchval("SELECT count(*) FROM outbox")
    return users, outbox


async def test_injection_in_every_field_and_parameter_goes_nowhere(
    client: httpx.AsyncClient, clean_db: Database
) -> None:
    seeded = []
    for i in range(SEEDED):
        response = await client.post(
            "/users/", json={"username": f"seed{i}", "first_name": "S", "last_name": "D"}
        )
        assert response.status_code == 201
        seeded.append(response.json())
    target = seeded[0]["id"]
    created = 0
    events = SEEDED

    for payload in PAYLOADS:
        name_ok = is_valid_name(payload)
        # Usernames: the rules refuse every one of these.
        body = {"username": payload, "first_name": "Inj", "last_name": "Ect"}
        assert_answer(await client.post("/users/", json=body), False, 201)
        assert_answer(await client.put(f"/users/{target}/username", json={"username": payload}), False, 200)
        assert_answer(
            await client.post("/users/", json={**body, "username": "x", "user_id": payload}), False, 201
        )
        # Names: stored verbatim when the rules accept them.
        for field in ("first_name", "last_name", "middle_name"):
            username = f"i{uuid.uuid4().hex[:12]}"
            body = {"username": username, "first_name": "Inj", "last_name": "Ect", field: payload}
            response = await client.post("/users/", json=body)
            assert_answer(response, name_ok, 201)
            if name_ok:
                created += 1
                events += 1
                assert response.json()[field] == payload.strip()
                fetched = await client.get(f"/users/@{username}")
                assert fetched.json()[field] == payload.strip()
            full_name = {"first_name": "Inj", "last_name": "Ect", field: payload}
            response = await client.put(f"/users/{target}/full-name", json=full_name)
            assert_answer(response, name_ok, 200)
            if name_ok:
                events += 1
                assert response.json()[field] == payload.strip()
        # Path and query parameters.
        quoted = quote(payload, safe="")
        for method, path in (
            ("GET", f"/users/{quoted}"),
            ("DELETE", f"/users/{quoted}"),
            ("PUT", f"/users/{quoted}/username"),
            ("PUT", f"/users/{quoted}/full-name"),
            ("GET", f"/users/@{quoted}"),
        ):
            body = {"username": "fine"} if path.endswith("username") else None
            if path.endswith("full-name"):
                body = {"first_name": "Fine", "last_name": "Name"}
            response = await client.request(method, path, json=body)
            assert response.status_code in (404, 422), (method, path, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
        for parameter in ("offset", "limit", "order", "deleted"):
            response = await client.get(f"/users/?{parameter}={quoted}")
            assert_answer(response, False, 200)
        assert (await client.get(f"/users/?unknown={quoted}")).status_code == 200

    assert created > 0, "no payload was a valid name: nothing was stored verbatim"
    # The tables are all there, with every row: the seeded ones unchanged (but the renamed target).
    assert await table_counts(clean_db) == (SEEDED + created, events)
    listed = (await client.get("/users/?limit=1000")).json()["users"]
    assert len(listed) == SEEDED + created
    by_id = {u["id"]: u for u in listed}
    for user in seeded[1:]:
        assert by_id[user["id"]] == user
    assert by_id[target]["username"] == "seed0"


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_injection_in_a_username_lookup_is_422(client: httpx.AsyncClient, payload: str) -> None:
    response = await client.get(f"/users/@{quote(payload, safe='')}")
    assert response.status_code == 422, response.text
