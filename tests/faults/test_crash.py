"""kill -9 in the middle of a concurrent write load: after a restart nothing is half-written, nothing the
service acknowledged is lost, and every committed event reaches the broker, in order per user."""

import asyncio
import contextlib
import signal
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

import httpx
import orjson
import pytest

from loadtest.service_process import ServiceProcess
from loadtest.traffic import Outcome, send
from tests.support.broker import Consumer
from tests.support.evidence import report
from tests.support.private_db import PrivateDatabase

pytestmark = [pytest.mark.broker, pytest.mark.slow]

WRITERS = 16
KILL_AFTER_ACKS = 300


@dataclass
class Write:
    kind: str  # "create" or "rename"
    user_id: str
    username: str
    outcome: Outcome


async def writer(client: httpx.AsyncClient, n: int, stop: asyncio.Event, log: list[Write]) -> None:
    """Creates users with ids of its own choosing (so a lost answer still names the user), and renames
    every third one it created."""
    created: list[str] = []
    i = 0
    while not stop.is_set():
        i += 1
        if i % 3 == 0 and created:
            user_id = created.pop(0)
            username = f"r{n}_{i}_{uuid.uuid4().hex[:6]}"
            outcome = await send(client, "PUT", f"/users/{user_id}/username", {"username": username})
            log.append(Write("rename", user_id, username, outcome))
            continue
        user_id = str(uuid.uuid4())
        username = f"c{n}_{i}_{uuid.uuid4().hex[:6]}"
        body = {"user_id": user_id, "username": username, "first_name": "Kill", "last_name": "Nine"}
        outcome = await send(client, "POST", "/users/", body)
        log.append(Write("create", user_id, username, outcome))
        if outcome.status == 201:
            created.append(user_id)


async def test_kill_9_under_write_load_loses_nothing_acknowledged(
    private_db: PrivateDatabase, broker_url: str, consumer: Consumer
) -> None:
    env = {"DATABASE_URL": private_db.url, "BROKER_URL": broker_url, "OUTBOX_POLL_INTERVAL": "0.2"}
    log: list[Write] = []
    with ServiceProcess(env) as first:
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=WRITERS)
        async with httpx.AsyncClient(base_url=first.url, limits=limits) as client:
            tasks = [asyncio.create_task(writer(client, n, stop, log)) for n in range(WRITERS)]
            deadline = time.monotonic() + 20
            while sum(w.outcome.ok for w in log) < KILL_AFTER_ACKS and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            first.signal(signal.SIGKILL)  # every writer has a request out at any time
            assert first.wait(10) == -signal.SIGKILL
            stop.set()
            await asyncio.gather(*tasks)

    failed = [w for w in log if not w.outcome.ok]
    assert all(w.outcome.status is None for w in failed), [str(w.outcome) for w in failed if w.outcome.status]
    assert failed, "the kill interrupted no request"

    with ServiceProcess(env) as second:
        async with httpx.AsyncClient(base_url=second.url) as client:
            assert (await client.get("/healthcheck/ready")).status_code == 200
        users = {str(r["id"]): r for r in await private_db.fetch("SELECT id, username FROM users")}
        outbox = await private_db.fetch(
            "SELECT id, type, aggregate_id, payload FROM outbox ORDER BY position"
        )
        subjects = {str(r["aggregate_id"]) for r in outbox}
        with contextlib.suppress(TimeoutError):  # what is missing is asserted below
            await consumer.wait_for(len(outbox), subjects, timeout=30)
        deadline = time.monotonic() + 10
        while await private_db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        unpublished = await private_db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")

    acknowledged = [w for w in log if w.outcome.ok]
    created_ok = {w.user_id for w in acknowledged if w.kind == "create"}
    created_failed = {w.user_id for w in failed if w.kind == "create"}
    events_by_user: dict[str, list[str]] = defaultdict(list)
    for row in outbox:
        events_by_user[str(row["aggregate_id"])].append(str(row["id"]))
    received = consumer.envelopes(subjects)
    received_by_user: dict[str, list[str]] = defaultdict(list)
    for envelope in received:
        seen = received_by_user[envelope["subject"]]
        if envelope["id"] not in seen:  # at least once: a repeat of an event already seen is allowed
            seen.append(envelope["id"])
    lost = {str(r["id"]) for r in outbox} - {e["id"] for e in received}
    report(
        "kill -9",
        requests=len(log),
        acknowledged=len(acknowledged),
        failed_client_side=len(failed),
        users=len(users),
        committed_unacknowledged=len(set(users) - created_ok),
        events=len(outbox),
        delivered=len(outbox) - len(lost),
        lost=len(lost),
        unpublished=unpublished,
    )

    # Nothing half-written: a user and its user.created event were committed together.
    created_events = {str(r["aggregate_id"]) for r in outbox if r["type"] == "user.created"}
    assert set(users) - created_events == set(), "users without their user.created event"
    assert subjects - set(users) == set(), "events of users that do not exist"
    # Nothing acknowledged is lost; only requests that failed on the client side may be missing.
    assert created_ok - set(users) == set(), "acknowledged creates are missing"
    assert set(users) - created_ok <= created_failed
    for w in acknowledged:
        if w.kind == "rename":
            assert users[w.user_id]["username"] == w.username, w
    # The stored state is the state the last event of each user announced.
    last_event = {str(r["aggregate_id"]): orjson.loads(r["payload"])["data"] for r in outbox}
    assert {user_id: row["username"] for user_id, row in users.items()} == {
        user_id: last_event[user_id]["username"] for user_id in users
    }
    # Every committed event was delivered, in commit order per user.
    assert lost == set(), f"{len(lost)} committed events never arrived"
    assert dict(received_by_user) == dict(events_by_user)
    assert unpublished == 0
