"""The HTTP contract, probed over HTTP in-process: every route, with and without the trailing slash."""

import asyncio
import uuid

import httpx
import pytest

ALICE = {"username": "alice", "first_name": "Alice", "last_name": "Smith"}


async def create(client: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    body = {**ALICE, **fields}
    response = await client.post("/users/", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_healthcheck(client: httpx.AsyncClient) -> None:
    for path in ("/healthcheck", "/healthcheck/"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


async def test_create_returns_201_the_user_and_location(client: httpx.AsyncClient) -> None:
    response = await client.post("/users/", json={**ALICE, "middle_name": "Ann"})
    assert response.status_code == 201
    user = response.json()
    assert response.headers["location"] == f"/users/{user['id']}"
    assert uuid.UUID(user["id"]).version == 7
    assert user == {
        "id": user["id"],
        "username": "alice",
        "first_name": "Alice",
        "last_name": "Smith",
        "middle_name": "Ann",
        "deleted": False,
    }


async def test_create_with_client_id_and_without_middle_name(client: httpx.AsyncClient) -> None:
    user_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    response = await client.post("/users", json={**ALICE, "user_id": user_id})
    assert response.status_code == 201
    assert response.json() == {
        "id": user_id,
        "username": "alice",
        "first_name": "Alice",
        "last_name": "Smith",
        "deleted": False,
    }
    assert "middle_name" not in response.json()


async def test_names_are_trimmed(client: httpx.AsyncClient) -> None:
    user = await create(client, first_name="  Zoë ", last_name=" O’Brien-Smith ")
    assert (user["first_name"], user["last_name"]) == ("Zoë", "O’Brien-Smith")


async def test_names_are_stored_in_nfc_and_measured_after_trimming(client: httpx.AsyncClient) -> None:
    user = await create(client, first_name="Jose\u0301", last_name="  " + "x" * 64 + "  ")
    assert user["first_name"] == "José"  # one code point for é, as its precomposed form is typed
    assert user["last_name"] == "x" * 64
    response = await client.post("/users/", json={**ALICE, "username": "filler", "first_name": "\u3164"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "first_name"


async def test_get_by_id_with_and_without_slash(client: httpx.AsyncClient) -> None:
    user = await create(client)
    for path in (f"/users/{user['id']}", f"/users/{user['id']}/"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == user


async def test_get_by_username_is_case_insensitive_and_live_only(client: httpx.AsyncClient) -> None:
    user = await create(client, username="Alice")
    response = await client.get("/users/@aLiCe")
    assert response.status_code == 200
    assert response.json() == user
    await client.delete(f"/users/{user['id']}")
    response = await client.get("/users/@alice")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_list_order_paging_and_filter(client: httpx.AsyncClient) -> None:
    created = [await create(client, username=f"user{i}") for i in range(5)]
    ids = [u["id"] for u in created]
    default = (await client.get("/users/")).json()["users"]
    explicit = (await client.get("/users?offset=0&limit=1000&order=asc")).json()["users"]
    assert [u["id"] for u in default] == ids
    assert default == explicit
    desc = (await client.get("/users/?order=desc")).json()["users"]
    assert desc == list(reversed(default))
    page = (await client.get("/users/?offset=1&limit=2")).json()["users"]
    assert [u["id"] for u in page] == ids[1:3]
    await client.delete(f"/users/{ids[0]}")
    deleted = (await client.get("/users/?deleted=true")).json()["users"]
    live = (await client.get("/users/?deleted=false")).json()["users"]
    assert [u["id"] for u in deleted] == ids[:1]
    assert [u["id"] for u in live] == ids[1:]
    assert len((await client.get("/users/")).json()["users"]) == 5


@pytest.mark.parametrize(
    "query", ["offset=-1", "limit=0", "limit=1001", "order=up", "deleted=maybe", "limit=abc", "offset=1e3"]
)
async def test_list_rejects_bad_parameters(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/users/?{query}")
    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"][0]["field"] == query.split("=", maxsplit=1)[0]
    assert problem["errors"][0]["location"] == "query"


async def test_rename(client: httpx.AsyncClient) -> None:
    user = await create(client)
    for path in (f"/users/{user['id']}/username", f"/users/{user['id']}/username/"):
        response = await client.put(path, json={"username": "Bob"})
        assert response.status_code == 200
        assert response.json() == {**user, "username": "Bob"}
    assert (await client.get("/users/@bob")).json()["id"] == user["id"]


async def test_change_full_name_clears_middle_name_when_absent(client: httpx.AsyncClient) -> None:
    user = await create(client, middle_name="Ann")
    response = await client.put(
        f"/users/{user['id']}/full-name", json={"first_name": "Alicia", "last_name": "Jones"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "id": user["id"],
        "username": "alice",
        "first_name": "Alicia",
        "last_name": "Jones",
        "deleted": False,
    }
    response = await client.put(
        f"/users/{user['id']}/full-name/", json={"first_name": "A", "last_name": "B", "middle_name": "C"}
    )
    assert response.json()["middle_name"] == "C"


async def test_delete_is_soft_and_releases_the_username(client: httpx.AsyncClient) -> None:
    user = await create(client)
    response = await client.delete(f"/users/{user['id']}/")
    assert response.status_code == 200
    assert response.json() == {"id": user["id"], "first_name": "Alice", "last_name": "Smith", "deleted": True}
    fetched = await client.get(f"/users/{user['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["deleted"] is True
    assert "username" not in fetched.json()
    again = await create(client, username="ALICE")
    assert again["id"] != user["id"]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("DELETE", "", None),
        ("PUT", "/username", {"username": "bob"}),
        ("PUT", "/full-name", {"first_name": "A", "last_name": "B"}),
    ],
)
async def test_deleted_user_cannot_change(
    client: httpx.AsyncClient, method: str, suffix: str, body: dict[str, str] | None
) -> None:
    user = await create(client)
    await client.delete(f"/users/{user['id']}")
    response = await client.request(method, f"/users/{user['id']}{suffix}", json=body)
    assert response.status_code == 409
    assert response.json()["type"].endswith("user-deleted")


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("DELETE", "", None),
        ("PUT", "/username", {"username": "bob"}),
        ("PUT", "/full-name", {"first_name": "A", "last_name": "B"}),
    ],
)
async def test_unknown_user_is_404(
    client: httpx.AsyncClient, method: str, suffix: str, body: dict[str, str] | None
) -> None:
    response = await client.request(method, f"/users/{uuid.uuid4()}{suffix}", json=body)
    assert response.status_code == 404
    assert response.json()["status"] == 404


async def test_taken_username_and_id_are_conflicts(client: httpx.AsyncClient) -> None:
    user = await create(client)
    taken = await client.post("/users/", json={**ALICE, "username": "ALICE"})
    assert taken.status_code == 409
    assert taken.json()["type"].endswith("username-taken")
    same_id = await client.post("/users/", json={**ALICE, "username": "other", "user_id": user["id"]})
    assert same_id.status_code == 409
    assert same_id.json()["type"].endswith("user-id-taken")
    other = await create(client, username="other2")
    rename = await client.put(f"/users/{other['id']}/username", json={"username": "Alice"})
    assert rename.status_code == 409


async def test_deleted_users_id_stays_taken(client: httpx.AsyncClient) -> None:
    user = await create(client)
    await client.delete(f"/users/{user['id']}")
    response = await client.post("/users/", json={**ALICE, "user_id": user["id"]})
    assert response.status_code == 409


async def test_racing_creates_of_one_username_exactly_one_wins(client: httpx.AsyncClient) -> None:
    bodies = [{**ALICE, "username": "Racer" if i % 2 else "racer"} for i in range(20)]
    responses = await asyncio.gather(*(client.post("/users/", json=b) for b in bodies))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19


async def test_racing_creates_of_one_id_exactly_one_wins(client: httpx.AsyncClient) -> None:
    user_id = str(uuid.uuid4())
    bodies = [{**ALICE, "username": f"racer{i}", "user_id": user_id} for i in range(20)]
    responses = await asyncio.gather(*(client.post("/users/", json=b) for b in bodies))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 19


async def test_racing_renames_to_one_username_exactly_one_wins(client: httpx.AsyncClient) -> None:
    users = [await create(client, username=f"u{i}") for i in range(10)]
    responses = await asyncio.gather(
        *(client.put(f"/users/{u['id']}/username", json={"username": "winner"}) for u in users)
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9
