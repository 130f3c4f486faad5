"""The change feed and read-your-writes through the balancer: concurrent clients create, rename, change
and delete users; each reads its write back at once (the balancer sends the read to another instance
most of the time); every acknowledged change reaches the broker as its event, in order per user,
exactly what was acknowledged and nothing else."""

import asyncio
import time
import uuid
from collections import defaultdict
from typing import Any

import httpx
import pytest

from tests.scaleout.conftest import TOKEN, Rehearsal, session_client
from tests.support.broker import Consumer

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CLIENTS = 8
USERS_PER_CLIENT = 12


async def client_run(
    http: httpx.AsyncClient, n: int, log: list[tuple[str, str, dict[str, Any]]]
) -> list[str]:
    """Each user: created, renamed, renamed by full name, every second one deleted; each write read back."""
    stale = []
    for i in range(USERS_PER_CLIENT):
        user_id = str(uuid.uuid4())
        writes: list[tuple[str, str, str, dict[str, Any] | None]] = [
            ("user.created", "POST", "/users/", {"user_id": user_id, "username": f"f{n}_{i}",
                                               "first_name": "Feed", "last_name": "Test"}),
            ("user.username_changed", "PUT", f"/users/{user_id}/username", {"username": f"g{n}_{i}"}),
            ("user.full_name_changed", "PUT", f"/users/{user_id}/full-name",
             {"first_name": "Fed", "last_name": "Tested", "middle_name": "M"}),
        ]  # fmt: skip
        if i % 2:
            writes.append(("user.deleted", "DELETE", f"/users/{user_id}", None))
        key = {"Idempotency-Key": f'"{user_id}"'}
        for event, method, path, body in writes:
            headers = key if method == "POST" else None
            response = await http.request(method, path, json=body, headers=headers)
            assert response.status_code in (200, 201), response.text
            assert TOKEN in response.headers, "a write answered without its consistency token"
            log.append((user_id, event, response.json()))
            read = await http.get(f"/users/{user_id}")
            if read.status_code != 200 or read.json() != response.json():
                stale.append(
                    f"{event} of {user_id}: wrote {response.json()}, read {read.status_code} {read.text}"
                )
            if method == "POST":
                stale += await replayed(http, path, body, key, response)
    return stale


async def replayed(
    http: httpx.AsyncClient,
    path: str,
    body: dict[str, Any] | None,
    key: dict[str, str],
    first: httpx.Response,
) -> list[str]:
    """A retry of the create answers a token too (a client retries when it never saw the first answer):
    a read with it sees the user, from any instance."""
    retry = await http.post(path, json=body, headers=key)
    if retry.status_code != 201 or retry.json() != first.json() or TOKEN not in retry.headers:
        return [f"replay of {path}: {retry.status_code} {dict(retry.headers)} {retry.text}"]
    read = await http.get(retry.headers["location"], headers={TOKEN: retry.headers[TOKEN]})
    if read.status_code != 200 or read.json() != first.json():
        return [f"read after a replay: {read.status_code} {read.text}"]
    return []


async def test_change_feed_and_read_your_writes_through_the_balancer(
    cluster: Rehearsal, consumer: Consumer
) -> None:
    log: list[tuple[str, str, dict[str, Any]]] = []
    clients = [session_client(cluster.url_of_balancer, timeout=10) for _ in range(CLIENTS)]
    started = time.monotonic()
    try:
        results = await asyncio.gather(*(client_run(c, n, log) for n, c in enumerate(clients)))
    finally:
        for client in clients:
            await client.aclose()
    elapsed = time.monotonic() - started
    stale = [line for result in results for line in result]
    assert stale == [], stale[:5]

    expected: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for user_id, event, body in log:
        expected[user_id].append((event, body))
    subjects = set(expected)
    deadline = time.monotonic() + 20
    while (
        len({e["id"] for _, e in consumer.arrivals_of(subjects)}) < len(log) and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.1)
    delivered: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    seen = set()
    for _, envelope in consumer.arrivals_of(subjects):
        if envelope["id"] in seen:  # at least once: a repeat is allowed, and ignored
            continue
        seen.add(envelope["id"])
        delivered[envelope["subject"]].append((envelope["type"], envelope["data"]))
    print(f"[feed] {len(log)} writes by {CLIENTS} clients in {elapsed:.1f} s, each read back; "
          f"{len(seen)} events delivered")  # fmt: skip
    # Nothing lost, nothing invented, each user's events in the order of its acknowledged changes.
    assert dict(delivered) == dict(expected)
