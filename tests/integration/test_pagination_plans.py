"""A page costs the same at any depth: the keyset statements are index range scans on (created_at, id),
on the partial index of their filter, read in order (no sort), stopping after the page; an offset page
reads every row before it."""

from typing import Any

import orjson
import pytest

from user_service.application.ports import Order
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.reader import _LIST, Paging

USERS = 30_000
PAGE = 100
INDEXES = {
    None: "ix_users_created_at_id",
    False: "ix_users_live_created_at_id",
    True: "ix_users_deleted_created_at_id",
}


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", ()) for n in nodes(child))]


def blocks(plan: dict[str, Any]) -> int:
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


@pytest.fixture
async def many_users(clean_db: Database) -> Database:
    async with clean_db.connection() as conn:
        await conn.execute(
            "INSERT INTO users (id, username, first_name, last_name, created_at, deleted_at) "
            "SELECT gen_random_uuid(), 'u' || i, 'A', 'B', "
            "timestamptz '2026-01-01' + i * interval '1 ms' + (i % 3) * interval '1 us', "
            "CASE WHEN i % 3 = 0 THEN timestamptz '2026-06-01' END "
            "FROM generate_series(1, $1) AS i",
            USERS,
        )
        await conn.execute("ANALYZE users")
    return clean_db


@pytest.mark.parametrize("order", list(Order))
@pytest.mark.parametrize("deleted", [None, False, True])
async def test_keyset_pages_are_index_range_scans_that_cost_the_same_at_any_depth(
    many_users: Database, order: Order, deleted: bool | None
) -> None:
    where = {None: "", True: "WHERE deleted_at IS NOT NULL", False: "WHERE deleted_at IS NULL"}[deleted]
    direction = order.value.upper()
    async with many_users.connection() as conn:
        ordered = await conn.fetch(
            f"SELECT created_at, id FROM users {where} ORDER BY created_at {direction}, id {direction}"
        )
        costs = []
        for depth in (PAGE, len(ordered) - 2 * PAGE):
            after = ordered[depth - 1]
            text = await conn.fetchval(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {_LIST[order, deleted, Paging.KEYSET]}",
                PAGE + 1,
                after["created_at"],
                after["id"],
            )
            plan = orjson.loads(text)[0]["Plan"]
            scan = plan["Plans"][0]
            assert plan["Node Type"] == "Limit"
            assert scan["Node Type"] == "Index Scan"
            assert scan["Index Name"] == INDEXES[deleted]
            assert scan["Scan Direction"] == ("Forward" if order is Order.ASC else "Backward")
            assert "ROW(" in scan["Index Cond"]  # the position is the index's range, not a filter
            assert scan["Actual Rows"] == PAGE + 1
            assert "Sort" not in {n["Node Type"] for n in nodes(plan)}
            costs.append(blocks(plan))
        offset_plan = orjson.loads(
            await conn.fetchval(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {_LIST[order, deleted, Paging.OFFSET]}",
                PAGE + 1,
                len(ordered) - 2 * PAGE,
            )
        )[0]["Plan"]
    shallow, deep = costs
    assert deep <= shallow + 3, costs  # the same few index and heap pages at any depth
    # An offset page that deep reads every row before it.
    assert offset_plan["Plans"][0]["Actual Rows"] >= len(ordered) - 2 * PAGE
    assert blocks(offset_plan) > 10 * deep
