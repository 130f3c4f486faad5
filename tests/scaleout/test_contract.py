"""The API's contract, every probe of tests/api, through the balancer, PgBouncer in transaction mode and
the replica, with a client that echoes its consistency token (so a read after a write sees it, on
whichever instance the balancer picks); and plain reads served by the replica, not the primary."""

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api import test_consistency, test_errors, test_users
from tests.scaleout.conftest import DATABASE, Rehearsal, session_client, wait_replayed

# In-process only: one patches the app object of the test process, one is about a service without replica.
_IN_PROCESS = {
    "test_unexpected_error_is_500_problem_without_internals",
    "test_without_a_replica_writes_send_no_token_and_reads_accept_one",
}
for _module in (test_users, test_errors, test_consistency):
    for _name, _test in vars(_module).items():
        if _name.startswith("test_") and _name not in _IN_PROCESS:
            globals()[_name] = _test


@pytest.fixture
async def client(cluster: Rehearsal) -> AsyncIterator[httpx.AsyncClient]:
    """tests/api's client, here through the balancer; the tables emptied before each probe."""
    conn = await cluster.primary.connect(DATABASE)
    try:
        await conn.execute("TRUNCATE users, outbox")
    finally:
        await conn.close()
    await wait_replayed(cluster)
    async with session_client(cluster.url_of_balancer, timeout=10) as http:
        yield http


_TRANSACTIONS = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
_USERS_SCANS = (
    "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'users'"
)


async def _counters(cluster: Rehearsal) -> dict[str, int]:
    """Each server's own statistics: its transactions, and its scans of `users` (only reads of users
    scan it; the monitors' samples and the relays' polls do not)."""
    counters = {}
    for name, server in (("primary", cluster.primary), ("replica", cluster.replica)):
        for what, query in (("transactions", _TRANSACTIONS), ("users_scans", _USERS_SCANS)):
            counters[f"{name}_{what}"] = int(await server.fetchval(query, database=DATABASE))  # type: ignore[call-overload]
    return counters


async def _settled_counters(cluster: Rehearsal, quiet: float = 11.0, at_most: float = 60.0) -> dict[str, int]:
    """The counters once the primary's scans of `users` have not moved for `quiet` seconds: an idle
    backend reports what it did up to 10 s later (PostgreSQL 15), so the earlier probes' writes would
    otherwise land in the window measured after."""
    deadline = time.monotonic() + at_most
    counters = await _counters(cluster)
    since = time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the primary's scans of users never settled"
        await asyncio.sleep(1)
        now = await _counters(cluster)
        if now["primary_users_scans"] != counters["primary_users_scans"]:
            since = time.monotonic()
        counters = now
    return counters


async def test_plain_reads_are_served_by_the_replica(cluster: Rehearsal) -> None:
    reads = 1200
    async with httpx.AsyncClient(base_url=cluster.url_of_balancer, timeout=10) as http:
        created = await http.post("/users/", json={"username": "reader", "first_name": "R", "last_name": "S"})
        assert created.status_code == 201
        user_id = created.json()["id"]
        await wait_replayed(cluster)
        before = await _settled_counters(cluster)
        started = time.monotonic()
        for _ in range(reads // 20):
            answers = await asyncio.gather(*(http.get(f"/users/{user_id}") for _ in range(20)))
            assert [a.status_code for a in answers] == [200] * 20
        elapsed = time.monotonic() - started
    # Each server counts its own; an idle backend reports its counters up to 10 s late (PostgreSQL 15).
    deadline = time.monotonic() + 15
    while (await _counters(cluster))["replica_users_scans"] - before["replica_users_scans"] < reads:
        assert time.monotonic() < deadline, "the replica did not count the reads"
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)
    grown = {k: v - before[k] for k, v in (await _counters(cluster)).items()}
    window = time.monotonic() - started
    print(f"[plain reads] {reads} in {elapsed:.1f} s; grown in {window:.1f} s: {grown}")
    assert grown["replica_transactions"] >= reads
    assert grown["replica_users_scans"] >= reads
    assert grown["primary_users_scans"] == 0
    # The primary's transactions in that time are its background work on timers (three monitors'
    # samples, the relays' polls: about 6-15 a second, reported late by idle backends), not the reads:
    # a read that went to the primary would add at least one each.
    assert grown["primary_transactions"] < reads // 2
