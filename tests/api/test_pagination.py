"""Keyset pagination: `GET /users/` links the next page (RFC 8288) while users follow, and following the
links walks every user that existed when the walk began exactly once, in order, whatever is created or
deleted meanwhile. A cursor that was not made by the service is a 422, never a 500."""

import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.test_errors import assert_problem
from user_service.infrastructure.db.database import Database

ALICE = {"first_name": "Alice", "last_name": "Smith"}
_LINK = re.compile(r'^<([^>]+)>; rel="next"$')


async def create(client: httpx.AsyncClient, username: str) -> str:
    response = await client.post("/users/", json={**ALICE, "username": username})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def next_of(response: httpx.Response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    match = _LINK.match(link)
    assert match, link
    return match[1]


async def in_order(db: Database, deleted: bool | None = None) -> list[str]:
    where = {None: "", True: "WHERE deleted_at IS NOT NULL", False: "WHERE deleted_at IS NULL"}[deleted]
    async with db.connection() as conn:
        rows = await conn.fetch(f"SELECT id FROM users {where} ORDER BY created_at, id")
    return [str(r["id"]) for r in rows]


async def walk(client: httpx.AsyncClient, first: str) -> list[list[str]]:
    pages, url = [], first
    while url is not None:
        assert len(pages) < 100, "the walk does not end"
        response = await client.get(url)
        assert response.status_code == 200, response.text
        pages.append([u["id"] for u in response.json()["users"]])
        url = next_of(response)
    return pages


async def test_pages_link_the_next_while_users_follow(client: httpx.AsyncClient, clean_db: Database) -> None:
    ids = [await create(client, f"user{i}") for i in range(5)]
    first = await client.get("/users/?limit=2")
    link = next_of(first)
    assert link is not None
    parts = urlsplit(link)
    assert parts.path == "/users/"
    query = parse_qs(parts.query)
    assert (query["limit"], query["order"], "deleted" in query) == (["2"], ["asc"], False)
    assert re.fullmatch(r"[A-Za-z0-9_-]{47}", query["after"][0])
    assert await walk(client, "/users/?limit=2") == [ids[:2], ids[2:4], ids[4:]]
    assert await walk(client, "/users/?limit=5") == [ids]  # a full last page links nothing
    assert await walk(client, "/users/?limit=2&order=desc") == [ids[:2:-1], ids[2:0:-1], ids[:1]]
    # offset pages link on with a cursor too
    assert [ids[1:3], ids[3:5]] == await walk(client, "/users/?limit=2&offset=1")
    assert (await client.get("/users/?limit=1000")).headers.get("link") is None
    await client.delete(f"/users/{ids[1]}")
    await client.delete(f"/users/{ids[3]}")
    assert await walk(client, "/users/?limit=1&deleted=true") == [[ids[1]], [ids[3]]]
    assert "deleted=true" in (next_of(await client.get("/users/?limit=1&deleted=true")) or "")
    assert await walk(client, "/users/?limit=2&deleted=false&order=desc") == [[ids[4], ids[2]], [ids[0]]]
    assert await in_order(clean_db) == ids


async def test_a_walk_sees_every_user_once_while_others_are_created_and_deleted(
    client: httpx.AsyncClient, clean_db: Database
) -> None:
    """With offsets, a deletion before the page would skip a user and a creation before it repeat one."""
    ids = [await create(client, f"user{i}") for i in range(12)]
    seen: list[str] = []
    url: str | None = "/users/?limit=3"
    step = 0
    while url is not None:
        response = await client.get(url)
        seen += [u["id"] for u in response.json()["users"]]
        url = next_of(response)
        step += 1
        await client.delete(f"/users/{ids[step - 1]}")  # one already seen
        await client.delete(f"/users/{ids[-step]}")  # one not yet seen: soft, so it stays in the walk
        await create(client, f"new{step}")  # created after the walk began: it comes last
    assert seen[:12] == ids
    assert len(seen) == len(set(seen))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    initial=st.integers(0, 10),
    limit=st.integers(1, 4),
    order=st.sampled_from(["asc", "desc"]),
    live_only=st.booleans(),
    changes=st.lists(
        st.lists(
            st.one_of(st.just(("create", 0)), st.tuples(st.just("delete"), st.integers(0, 20))), max_size=3
        ),
        max_size=12,
    ),
)
async def test_any_walk_sees_the_users_it_began_with_once_in_order(
    client: httpx.AsyncClient,
    clean_db: Database,
    *,
    initial: int,
    limit: int,
    order: str,
    live_only: bool,
    changes: list[list[tuple[str, int]]],
) -> None:
    async with clean_db.connection() as conn:
        await conn.execute("TRUNCATE users, outbox, idempotency_keys")
    for i in range(initial):
        await create(client, f"u{i}")
    began = await in_order(clean_db)
    if order == "desc":
        began.reverse()
    deleted_during: set[str] = set()
    seen: list[str] = []
    url: str | None = f"/users/?limit={limit}&order={order}" + ("&deleted=false" if live_only else "")
    pages = 0
    while url is not None:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        page = [u["id"] for u in response.json()["users"]]
        assert len(page) <= limit
        # A link leads to users, unless those that followed were deleted (out of a live-only walk) since.
        assert page or not seen or (live_only and deleted_during)
        seen += page
        url = next_of(response)
        for kind, index in changes[pages] if pages < len(changes) else []:
            if kind == "create":
                await create(client, f"n{uuid.uuid4().hex[:12]}")
            elif began and (target := began[index % len(began)]) not in deleted_during:
                await client.delete(f"/users/{target}")
                deleted_during.add(target)
        pages += 1
        assert pages <= 60, "the walk does not end"
    assert len(seen) == len(set(seen))  # none twice
    from_start = [i for i in seen if i in set(began)]
    assert from_start == [i for i in began if i in set(from_start)]  # in order
    expected = set(began) - deleted_during if live_only else set(began)
    assert expected <= set(from_start)  # none skipped (a live-only walk may miss the users it saw deleted)
    if order == "desc":
        assert set(seen) <= set(began)  # newer users are before where a descending walk began


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: c[:-1],
        lambda c: c[:-2] + ("A" if c[-2] != "A" else "B") + c[-1],
        lambda c: ("A" if c[0] != "A" else "B") + c[1:],
        lambda c: c + "AAAA",
        lambda c: "A" * 47,
        lambda c: "x",
        lambda c: "=" * 8,
        lambda c: "%FF%00",
        lambda c: c.replace(c[10], "-" if c[10] != "-" else "_"),
    ],
)
async def test_a_tampered_or_malformed_cursor_is_422(client: httpx.AsyncClient, mangle: Any) -> None:
    for i in range(3):
        await create(client, f"user{i}")
    link = next_of(await client.get("/users/?limit=1"))
    assert link is not None
    cursor = parse_qs(urlsplit(link).query)["after"][0]
    response = await client.get("/users/", params={"limit": 1, "after": mangle(cursor)})
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "after"  # type: ignore[index]
    assert problem["errors"][0]["location"] == "query"  # type: ignore[index]


async def test_a_cursor_belongs_to_its_listing_and_not_to_offsets(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await create(client, f"user{i}")
    link = next_of(await client.get("/users/?limit=1&deleted=false"))
    assert link is not None
    cursor = parse_qs(urlsplit(link).query)["after"][0]
    for other in ({"order": "desc", "deleted": "false"}, {}, {"deleted": "true"}):
        problem = assert_problem(await client.get("/users/", params={"after": cursor, **other}), 422)
        assert "another listing" in problem["errors"][0]["message"]  # type: ignore[index]
    ok = await client.get("/users/", params={"after": cursor, "deleted": "false", "limit": 100})
    assert ok.status_code == 200  # the page size may change during a walk
    assert len(ok.json()["users"]) == 2
    problem = assert_problem(
        await client.get("/users/", params={"after": cursor, "deleted": "false", "offset": 1}), 422
    )
    assert problem["errors"][0]["field"] == "offset"  # type: ignore[index]
