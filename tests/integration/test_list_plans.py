"""The offset pages' statements read an index in the page's order: no scan of the whole table, no sort
(keyset pages: tests/contracts)."""

import json

import pytest

from user_service.application.ports import Order
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.reader import _LIST, DEEP_OFFSET, Paging

USERS = 200_000  # enough that the planner weighs it as a real table


def nodes(plan: dict[str, object]) -> list[dict[str, object]]:
    found = [plan]
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        found += nodes(child)
    return found


@pytest.fixture
async def many_users(clean_db: Database) -> Database:
    async with clean_db.connection() as conn:
        await conn.execute(
            "INSERT INTO users (id, username, first_name, last_name, created_at, deleted_at) "
            "SELECT gen_random_uuid(), 'u' || i, 'Pl', 'An', now() - i * interval '1 ms', "
            "CASE WHEN i % 100 = 0 THEN now() END FROM generate_series(1, $1) i",
            USERS,
            timeout=120,
        )
        await conn.execute("VACUUM ANALYZE users", timeout=120)
    return clean_db


@pytest.mark.parametrize("order", list(Order))
@pytest.mark.parametrize(
    ("deleted", "index"),
    [
        (True, "ix_users_deleted_created_at_id"),
        (False, "ix_users_live_created_at_id"),
        (None, "ix_users_created_at_id"),
    ],
)
@pytest.mark.parametrize("offset", [0, DEEP_OFFSET])
async def test_a_page_reads_its_index_in_order(
    many_users: Database, order: Order, deleted: bool | None, index: str, offset: int
) -> None:
    statement = _LIST[order, deleted, Paging.DEEP_OFFSET if offset >= DEEP_OFFSET else Paging.OFFSET]
    async with many_users.connection() as conn:
        (plan,) = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", 100, offset))
    steps = nodes(plan["Plan"])
    kinds = [step["Node Type"] for step in steps]
    assert "Seq Scan" not in kinds, kinds
    assert index in [step.get("Index Name") for step in steps], steps
    if offset < DEEP_OFFSET:
        assert "Sort" not in kinds, kinds
    else:  # rows skipped on the index alone, then the page's rows by primary key
        skip = next(step for step in steps if step.get("Index Name") == index)
        assert skip["Node Type"] == "Index Only Scan", steps
        assert "pk_users" in [step.get("Index Name") for step in steps], steps
