"""The floor: the least Python that does the users service's work, the baseline it is measured against.

A raw ASGI callable over one asyncpg pool: no framework, no validation, no dependency injection, no
telemetry. It speaks to the service's own schema (run `user-service migrate` on its database first)
with the service's own SQL:

* POST /users/           one statement, as the service writes it: the user row and, in a data-modifying
                         WITH, its outbox row whose payload is the CloudEvents 1.0 JSON envelope of
                         `user.created` (UUIDv7 ids, as the service)
* GET /users/{id}        the service's read of one row by primary key
* GET /users/@{username} the live user by lower(username)
* GET /users/?offset&limit&order&deleted   the service's page query on (created_at, id)
* GET /healthcheck       a constant body

Anything else is a 404. Run it as one worker, as the service is measured:

    FLOOR_DATABASE_URL=postgresql://... uvicorn floor_app:app --app-dir loadtest \\
        --loop uvloop --http httptools --no-access-log --port 5100

Needs asyncpg, orjson and uvicorn[standard]: the service's own dependencies.
"""

from __future__ import annotations

import gc
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

POOL_MIN = int(os.environ.get("FLOOR_POOL_MIN", "2"))
POOL_MAX = int(os.environ.get("FLOOR_POOL_MAX", "10"))  # the service's DB_POOL_MAX_SIZE default

COLUMNS = "id, username, first_name, last_name, middle_name, deleted_at IS NOT NULL AS deleted"
BY_ID = f"SELECT {COLUMNS} FROM users WHERE id = $1"
BY_USERNAME = f"SELECT {COLUMNS} FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL"
FILTERS = {"": "", "true": "WHERE deleted_at IS NOT NULL ", "false": "WHERE deleted_at IS NULL "}
PAGES = {
    (order, deleted): (
        f"SELECT {COLUMNS} FROM users {where}ORDER BY created_at {order}, id {order} LIMIT $1 OFFSET $2"
    )
    for order in ("ASC", "DESC")
    for deleted, where in FILTERS.items()
}
CREATE = (
    "WITH written AS (INSERT INTO users (id, username, first_name, last_name, middle_name) "
    "VALUES ($1, $2, $3, $4, $5)) "
    "INSERT INTO outbox (id, type, aggregate_id, payload, traceparent) VALUES ($6, $7, $8, $9::jsonb, $10)"
)

JSON = [(b"content-type", b"application/json")]
PROBLEM = [(b"content-type", b"application/problem+json")]
HEALTHY = orjson.dumps({"status": "ok"})
NOT_FOUND = orjson.dumps({"title": "Not Found", "status": 404})
CONFLICT = orjson.dumps({"title": "Conflict", "status": 409})

pool: asyncpg.Pool | None = None


async def _keep_session(_: asyncpg.Connection) -> None:
    return None


def uuid7() -> uuid.UUID:
    """48 bits of Unix milliseconds, version 7, variant 10, random rest (the service's id scheme)."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (time.time_ns() // 1_000_000) << 80 | 7 << 76 | (rand >> 68 & 0xFFF) << 64 | 2 << 62
    return uuid.UUID(int=value | rand & ((1 << 62) - 1))


def representation(row: Any) -> dict[str, Any]:
    """A user row as the API shows it: no username once deleted, absent values omitted."""
    deleted = row["deleted"]
    out: dict[str, Any] = {"id": str(row["id"])}
    if not deleted:
        out["username"] = row["username"]
    out["first_name"] = row["first_name"]
    out["last_name"] = row["last_name"]
    if row["middle_name"] is not None:
        out["middle_name"] = row["middle_name"]
    out["deleted"] = deleted
    return out


async def respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = JSON) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def create_user(receive: Any, send: Any) -> None:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    data = orjson.loads(b"".join(chunks))
    user_id = uuid.UUID(data["user_id"]) if data.get("user_id") else uuid7()
    middle_name = data.get("middle_name")
    user = representation(
        {
            "id": user_id,
            "username": data["username"],
            "first_name": data["first_name"],
            "last_name": data["last_name"],
            "middle_name": middle_name,
            "deleted": False,
        }
    )
    envelope = orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(event_id := uuid7()),
            "source": "user-service",
            "type": "user.created",
            "subject": user["id"],
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": user,
        }
    ).decode()
    assert pool is not None
    try:
        await pool.execute(
            CREATE,
            user_id,
            data["username"],
            data["first_name"],
            data["last_name"],
            middle_name,
            event_id,
            "user.created",
            user_id,
            envelope,
            None,
        )
    except asyncpg.UniqueViolationError:
        await respond(send, 409, CONFLICT, PROBLEM)
        return
    await respond(send, 201, orjson.dumps(user), [*JSON, (b"location", f"/users/{user_id}".encode())])


async def list_users(query: bytes, send: Any) -> None:
    params = dict(part.split("=", 1) for part in query.decode().split("&") if "=" in part)
    order = "DESC" if params.get("order") == "desc" else "ASC"
    sql = PAGES[order, params.get("deleted", "")]
    assert pool is not None
    rows = await pool.fetch(sql, int(params.get("limit", 1000)), int(params.get("offset", 0)))
    await respond(send, 200, orjson.dumps({"users": [representation(r) for r in rows]}))


async def get_user(sql: str, key: Any, send: Any) -> None:
    assert pool is not None
    row = await pool.fetchrow(sql, key)
    if row is None:
        await respond(send, 404, NOT_FOUND, PROBLEM)
    else:
        await respond(send, 200, orjson.dumps(representation(row)))


async def lifespan(receive: Any, send: Any) -> None:
    global pool  # noqa: PLW0603 - one pool per process, opened at startup
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            dsn = os.environ["FLOOR_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
            # Released connections are not reset (a round trip): nothing here changes session state.
            pool = await asyncpg.create_pool(dsn, min_size=POOL_MIN, max_size=POOL_MAX, reset=_keep_session)
            # The service's garbage collector setting (user_service.main.app.settle_garbage_collector).
            gc.collect()
            gc.freeze()
            gc.set_threshold(10_000, *gc.get_threshold()[1:])
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if pool is not None:
                await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    method, path = scope["method"], scope["path"]
    if path == "/healthcheck":
        await respond(send, 200, HEALTHY)
    elif path in ("/users/", "/users"):
        if method == "POST":
            await create_user(receive, send)
        else:
            await list_users(scope["query_string"], send)
    elif path.startswith("/users/@") and method == "GET":
        await get_user(BY_USERNAME, path[8:], send)
    elif path.startswith("/users/") and method == "GET":
        try:
            user_id = uuid.UUID(path[7:])
        except ValueError:
            await respond(send, 404, NOT_FOUND, PROBLEM)
            return
        await get_user(BY_ID, user_id, send)
    else:
        await respond(send, 404, NOT_FOUND, PROBLEM)
