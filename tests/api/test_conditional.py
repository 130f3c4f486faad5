"""Conditional requests (RFC 9110 §13): every answer that carries a user carries its ETag; a read with
If-None-Match can be a 304; a change with If-Match (or If-None-Match) is a 412 problem, changing nothing and
publishing nothing, when the user is no longer in the state the client saw."""

import asyncio
import uuid

import httpx
import pytest

from tests.api.test_errors import assert_problem
from user_service.infrastructure.db.database import Database

ALICE = {"username": "alice", "first_name": "Alice", "last_name": "Smith"}
EXAMPLE_TAG = '"3fa85f64-5717-4562-b3fc-2c963f66afa6.2"'


async def create(client: httpx.AsyncClient, **fields: object) -> httpx.Response:
    response = await client.post("/users/", json={**ALICE, **fields})
    assert response.status_code == 201, response.text
    return response


async def outbox_types(db: Database) -> list[str]:
    async with db.connection() as conn:
        return [r["type"] for r in await conn.fetch("SELECT type FROM outbox ORDER BY position")]


async def test_every_answer_with_a_user_has_an_etag_that_changes_with_each_change(
    client: httpx.AsyncClient,
) -> None:
    created = await create(client)
    user = created.json()
    uid = user["id"]
    tags = [created.headers["etag"]]
    assert tags[0] == f'"{uid}.1"'
    for response in (await client.get(f"/users/{uid}"), await client.get("/users/@ALICE")):
        assert response.headers["etag"] == tags[0]
        assert response.json() == user  # the representation is unchanged: no version in the body
    assert set(user) == {"id", "username", "first_name", "last_name", "deleted"}
    changes = [
        client.put(f"/users/{uid}/username", json={"username": "bob"}),
        client.put(f"/users/{uid}/full-name", json={"first_name": "Bo", "last_name": "B"}),
        client.delete(f"/users/{uid}"),
    ]
    for change in changes:
        response = await change
        assert response.status_code == 200, response.text
        tags.append(response.headers["etag"])
        assert (await client.get(f"/users/{uid}")).headers["etag"] == tags[-1]
    assert tags == [f'"{uid}.{v}"' for v in (1, 2, 3, 4)]


async def test_a_change_that_changes_nothing_keeps_the_etag(client: httpx.AsyncClient) -> None:
    created = await create(client)
    same = await client.put(created.headers["location"] + "/username", json={"username": "alice"})
    assert same.headers["etag"] == created.headers["etag"]


async def test_answers_about_the_user_say_which_resource_the_etag_tags(client: httpx.AsyncClient) -> None:
    created = await create(client)
    location = created.headers["location"]
    assert (await client.get("/users/@alice")).headers["content-location"] == location
    renamed = await client.put(location + "/username", json={"username": "bob"})
    assert renamed.headers["content-location"] == location
    assert "content-location" not in (await client.get(location)).headers


@pytest.mark.parametrize("form", ["{tag}", "W/{tag}", '"other", {tag}', "*", ' {tag} , "x"'])
async def test_a_read_naming_the_current_state_is_304_without_a_body(
    client: httpx.AsyncClient, form: str
) -> None:
    created = await create(client)
    tag = created.headers["etag"]
    for path in (created.headers["location"], "/users/@alice"):
        response = await client.get(path, headers={"if-none-match": form.format(tag=tag)})
        assert response.status_code == 304, (path, response.text)
        assert response.content == b""
        assert response.headers["etag"] == tag
        assert response.headers["x-request-id"]


async def test_a_read_naming_an_older_state_is_200(client: httpx.AsyncClient) -> None:
    created = await create(client)
    old = created.headers["etag"]
    await client.put(created.headers["location"] + "/username", json={"username": "bob"})
    response = await client.get(created.headers["location"], headers={"if-none-match": old})
    assert response.status_code == 200
    assert response.json()["username"] == "bob"


async def test_a_username_taken_over_never_answers_304_for_its_old_holder(client: httpx.AsyncClient) -> None:
    first = await create(client)
    tag = (await client.get("/users/@alice")).headers["etag"]
    await client.delete(first.headers["location"])
    second = await create(client)
    response = await client.get("/users/@alice", headers={"if-none-match": tag})
    assert response.status_code == 200
    assert response.json()["id"] == second.json()["id"]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PUT", "/username", {"username": "bob"}),
        ("PUT", "/full-name", {"first_name": "Bo", "last_name": "B"}),
        ("DELETE", "", None),
    ],
)
async def test_a_change_on_a_stale_etag_is_412_and_changes_nothing(
    client: httpx.AsyncClient, clean_db: Database, method: str, suffix: str, body: dict[str, str] | None
) -> None:
    created = await create(client)
    location, stale = created.headers["location"], created.headers["etag"]
    moved = await client.put(location + "/full-name", json={"first_name": "Al", "last_name": "Ice"})
    current = moved.headers["etag"]
    before = (await client.get(location)).json()
    events = await outbox_types(clean_db)
    for if_match in (stale, f"W/{current}", '"*"', f'"{uuid.uuid4()}.2"', f"{stale}, W/{current}"):
        response = await client.request(method, location + suffix, json=body, headers={"if-match": if_match})
        problem = assert_problem(response, 412)
        assert problem["type"] == "urn:user-service:problem:precondition-failed"
        assert "etag" not in response.headers
    response = await client.request(method, location + suffix, json=body, headers={"if-none-match": current})
    assert_problem(response, 412)
    response = await client.request(method, location + suffix, json=body, headers={"if-none-match": "*"})
    assert_problem(response, 412)
    assert (await client.get(location)).json() == before
    assert await outbox_types(clean_db) == events  # no event for a refused change

    response = await client.request(
        method,
        location + suffix,
        json=body,
        headers={"if-match": f"{stale}, {current}", "if-none-match": stale},
    )
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{created.json()["id"]}.3"'
    assert len(await outbox_types(clean_db)) == len(events) + 1


async def test_if_match_star_is_any_live_user(client: httpx.AsyncClient) -> None:
    created = await create(client)
    location = created.headers["location"]
    renamed = await client.put(location + "/username", json={"username": "bob"}, headers={"if-match": "*"})
    assert renamed.status_code == 200
    assert (await client.delete(location, headers={"if-match": "*"})).status_code == 200
    assert_problem(await client.delete(location, headers={"if-match": "*"}), 412)
    # A tag of the deleted user's current state passes the condition; the rule of the domain still holds.
    current = (await client.get(location)).headers["etag"]
    problem = assert_problem(await client.delete(location, headers={"if-match": current}), 409)
    assert problem["type"] == "urn:user-service:problem:user-deleted"


async def test_an_unknown_user_is_404_whatever_the_condition(client: httpx.AsyncClient) -> None:
    path = f"/users/{uuid.uuid4()}"
    assert_problem(await client.delete(path, headers={"if-match": '"x"'}), 404)
    assert_problem(await client.get(path, headers={"if-none-match": "*"}), 404)


@pytest.mark.parametrize("value", ["abc", '"unterminated', 'W/"a" "b"', '"a",W/', '*, "a"', '"a\\"b"'])
@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
async def test_a_field_that_is_no_list_of_entity_tags_is_422(
    client: httpx.AsyncClient, header: str, value: str
) -> None:
    created = await create(client)
    location = created.headers["location"]
    requests = [client.delete(location, headers={header: value})]
    if header == "If-None-Match":
        requests.append(client.get(location, headers={header: value}))
    for request in requests:
        problem = assert_problem(await request, 422)
        assert problem["errors"] == [  # type: ignore[comparison-overlap]
            {
                "field": header,
                "location": "header",
                "pointer": f"#/{header}",
                "message": f"must be * or a list of entity tags, e.g. {EXAMPLE_TAG}",
            }
        ]
    assert (await client.get(location)).json()["deleted"] is False


async def test_racing_changes_on_one_etag_exactly_one_wins(
    client: httpx.AsyncClient, clean_db: Database
) -> None:
    """Two editors who read the same state: the compare is made on the row as locked, so of many concurrent
    changes made on one ETag exactly one applies, and the others are 412 and publish nothing."""
    created = await create(client)
    location, tag = created.headers["location"], created.headers["etag"]
    responses = await asyncio.gather(
        *(
            client.put(location + "/username", json={"username": f"editor{i}"}, headers={"if-match": tag})
            for i in range(20)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 19
    (winner,) = [r for r in responses if r.status_code == 200]
    assert (await client.get(location)).json() == winner.json()
    assert await outbox_types(clean_db) == ["user.created", "user.username_changed"]
