"""The drills: an instance killed, the replica stopped, its replay paused, PgBouncer restarted, each under
load through the balancer, each bounded in time; the rehearsal is whole again before the next."""

import asyncio
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from loadtest.problem import PROBLEM_JSON
from loadtest.traffic import Outcome, send
from tests.scaleout.conftest import Rehearsal, readiness, session_client, wait_replayed
from tests.support.broker import Consumer
from tests.support.evidence import report

pytestmark = [pytest.mark.broker, pytest.mark.slow]

WORKERS = 6


@dataclass
class Timed:
    outcome: Outcome
    user_id: str | None = None

    @property
    def done(self) -> float:
        return self.outcome.started + self.outcome.elapsed


def from_instance(outcome: Outcome) -> bool:
    """Answered by an instance of the service (they all send X-Request-ID), not by the balancer."""
    return "x-request-id" in outcome.headers


Work = Callable[[httpx.AsyncClient, list[Timed]], Awaitable[None]]


async def under_load(url: str, work: Work, log: list[Timed], drill: Callable[[], Awaitable[None]]) -> None:
    """WORKERS clients doing `work` in a loop through the balancer until `drill` is over."""
    stop = asyncio.Event()

    async def loop(client: httpx.AsyncClient) -> None:
        async with client:
            while not stop.is_set():
                await work(client, log)

    tasks = [asyncio.create_task(loop(session_client(url, timeout=10))) for _ in range(WORKERS)]
    try:
        await asyncio.wait_for(drill(), 60)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def create(client: httpx.AsyncClient, log: list[Timed]) -> str | None:
    user_id = str(uuid.uuid4())
    # 64 random bits: the drills' users share one database, where the 32 bits of a uuid4's first eight
    # digits can repeat (a 409 for a username another drill user had drawn).
    username = f"d{user_id.replace('-', '')[:16]}"
    body = {"user_id": user_id, "username": username, "first_name": "Drill", "last_name": "Load"}
    outcome = await send(client, "POST", "/users/", body)
    log.append(Timed(outcome, user_id))
    return user_id if outcome.status == 201 else None


def metric(url: str, series: str) -> float:
    """The value of one series (`name` or `name{labels}` as exposed) of an instance's metrics."""
    for line in httpx.get(f"{url}/metrics", timeout=2).text.splitlines():
        if line.rsplit(" ", 1)[0] == series:
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(series)


async def ready_states(cluster: Rehearsal) -> list[dict[str, Any] | None]:
    """Every instance's readiness, asked of all at once and off the event loop the load runs on."""
    return list(await asyncio.gather(*(asyncio.to_thread(readiness, i.url) for i in cluster.instances)))


async def off_loop(call: Callable[[], object]) -> None:
    """A blocking step of a drill (pg_ctl, a process start), run off the event loop the load runs on."""
    await asyncio.to_thread(call)


def log_events(cluster: Rehearsal, n: int, since: int, event: str) -> list[dict[str, object]]:
    return [line for line in cluster.log_lines(n)[since:] if line.get("event") == event]


async def test_relay_leader_killed_under_create_load(cluster: Rehearsal, consumer: Consumer) -> None:
    deadline = time.monotonic() + 10
    while (leader := cluster.leader()) is None:
        assert time.monotonic() < deadline, "no relay holds the lock"
        await asyncio.sleep(0.2)
    log: list[Timed] = []
    killed_at = 0.0

    async def kill() -> None:
        nonlocal killed_at
        await asyncio.sleep(3)
        killed_at = time.monotonic()
        cluster.instances[leader].signal(signal.SIGKILL)
        await asyncio.sleep(9)

    async def work(client: httpx.AsyncClient, log: list[Timed]) -> None:
        await create(client, log)

    try:
        await under_load(cluster.url_of_balancer, work, log, kill)
        acknowledged = {t.user_id: t.done for t in log if t.outcome.status == 201}
        subjects = set(acknowledged)
        arrived: dict[str, float] = {}
        wait_until = max(acknowledged.values()) + 12
        while len(arrived) < len(acknowledged) and time.monotonic() < wait_until:
            arrived = {
                e["subject"]: t for t, e in consumer.arrivals_of(subjects) if e["type"] == "user.created"
            }
            await asyncio.sleep(0.1)
        arrived = {e["subject"]: t for t, e in consumer.arrivals_of(subjects) if e["type"] == "user.created"}
        new_leader = cluster.leader()
    finally:
        cluster.restart_instance(leader)
    failed = [t.outcome for t in log if not t.outcome.ok]
    late = {u: arrived[u] - acked for u, acked in acknowledged.items() if u in arrived}
    report(
        "relay leader killed",
        requests=len(log),
        acknowledged=len(acknowledged),
        failed=len(failed),
        failed_statuses=sorted({str(o.status) for o in failed}),
        delivered=len(arrived),
        slowest_delivery_s=round(max(late.values()), 2),
        new_leader=new_leader,
        old_leader=leader,
    )
    assert killed_at
    assert new_leader is not None
    assert new_leader != leader
    assert subjects - set(arrived) == set(), "acknowledged creates whose user.created never arrived"
    assert max(late.values()) <= 10, sorted(late.values())[-5:]
    assert len(failed) <= 0.02 * len(log), [str(o) for o in failed]
    # What failed was cut by the kill: a lost connection or the balancer's answer for it, no instance's 5xx.
    assert [str(o) for o in failed if o.status is not None and from_instance(o)] == []
    assert all(o.started < killed_at + 2 for o in failed), [str(o) for o in failed]


async def test_replica_stopped_under_read_load(cluster: Rehearsal) -> None:
    async with httpx.AsyncClient(base_url=cluster.url_of_balancer, timeout=10) as http:
        user = (
            await http.post("/users/", json={"username": "rl", "first_name": "R", "last_name": "L"})
        ).json()
    await wait_replayed(cluster)
    offsets = [len(cluster.log_lines(n)) for n in range(len(cluster.instances))]
    log: list[Timed] = []
    states: dict[str, float] = {}

    async def work(client: httpx.AsyncClient, log: list[Timed]) -> None:
        log.append(Timed(await send(client, "GET", f"/users/{user['id']}")))

    async def drill() -> None:
        await asyncio.sleep(1.5)
        states["stopped"] = time.monotonic()
        await off_loop(cluster.replica.halt)
        while time.monotonic() < states["stopped"] + 4:
            asked = time.monotonic()
            ready = await ready_states(cluster)
            if all(r is not None and r["checks"]["database_replica"] == "down" for r in ready):
                states.setdefault("all_down", asked)
            assert all(r is not None for r in ready), "readiness not 200 while the replica is down"
            await asyncio.sleep(0.1)
        states["serving_during"] = await asyncio.to_thread(
            lambda: max(metric(i.url, "db_replica_serving") for i in cluster.instances)
        )
        await off_loop(cluster.replica.resume)
        states["started"] = time.monotonic()
        while time.monotonic() < states["started"] + 15:
            ready = await ready_states(cluster)
            if all(r is not None and r["checks"]["database_replica"] == "ok" for r in ready):
                states["all_ok"] = time.monotonic()
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # reads on the replica again

    await under_load(cluster.url_of_balancer, work, log, drill)
    bad = [str(t.outcome) for t in log if t.outcome.status != 200]
    before = [t.outcome.elapsed for t in log if t.outcome.started < states["stopped"]]
    during = [t.outcome.elapsed for t in log if t.outcome.started >= states["stopped"]]
    after = [t for t in log if "all_ok" in states and t.outcome.started > states["all_ok"] + 0.2]
    served_after = sum(metric(i.url, 'db_client_reads_total{db_instance_role="replica",reason="fresh"}')
                       for i in cluster.instances)  # fmt: skip
    fell_back = [len(log_events(cluster, n, offsets[n], "reads fall back to the primary")) for n in range(3)]
    returned = [len(log_events(cluster, n, offsets[n], "reads on the replica")) for n in range(3)]
    report(
        "replica stopped",
        reads=len(log),
        not_200=len(bad),
        slowest_read_before_stop_s=round(max(before), 3),
        slowest_read_after_stop_s=round(max(during), 3),
        all_readiness_down_after_s=round(states.get("all_down", float("nan")) - states["stopped"], 2),
        all_back_after_start_s=round(states.get("all_ok", float("nan")) - states["started"], 2),
        fallback_lines=fell_back,
        return_lines=returned,
    )
    assert bad == [], bad[:5]
    assert max(during) < 2  # every read after the stop answered within 2 s, by the primary if need be
    assert "all_down" in states
    assert states["all_down"] - states["stopped"] < 2
    assert states["serving_during"] == 0
    assert "all_ok" in states, "reads did not return to the replica"
    assert after, "no reads after the replica came back"
    assert served_after > 0
    # One fallback line and one return line per instance: not one per request, nor one per state passed.
    assert fell_back == [1, 1, 1]
    assert returned == [1, 1, 1]
    assert all(metric(i.url, "db_replica_serving") == 1 for i in cluster.instances)


async def test_paused_replay_keeps_read_your_writes_and_the_staleness_bound(cluster: Rehearsal) -> None:
    acked: list[tuple[float, str]] = []  # (acknowledged at, user id), for plain reads of others' writes
    violations: list[str] = []
    log: list[Timed] = []
    marks: dict[str, float] = {}

    async def work(client: httpx.AsyncClient, log: list[Timed]) -> None:
        user_id = await create(client, log)
        if user_id is None:
            violations.append(f"create failed: {log[-1].outcome}")
            return
        acked.append((time.monotonic(), user_id))
        read = await send(client, "GET", f"/users/{user_id}")  # with the client's token
        log.append(Timed(read))
        if read.status != 200 or read.json()["id"] != user_id:
            violations.append(f"read-your-writes: {read}")
        renamed = f"p{uuid.uuid4().hex[:16]}"
        changed = await send(client, "PUT", f"/users/{user_id}/username", {"username": renamed})
        by_name = await send(client, "GET", f"/users/@{renamed}")
        log += [Timed(changed), Timed(by_name)]
        if changed.status != 200 or by_name.status != 200 or by_name.json()["username"] != renamed:
            violations.append(f"read-your-writes after a rename: {changed} then {by_name}")
        # A plain read (no token) of a write acknowledged over the bound (1 s) ago sees it.
        old = [u for t, u in acked if time.monotonic() - t > 1.05]
        if old:
            plain = await send(plain_client, "GET", f"/users/{old[-1]}")
            if plain.status != 200:
                violations.append(f"staleness bound: {plain}")

    async def drill() -> None:
        await asyncio.sleep(1.5)
        await cluster.replica.fetchval("SELECT pg_wal_replay_pause()")
        marks["paused"] = time.monotonic()
        while time.monotonic() < marks["paused"] + 4:
            asked = time.monotonic()
            ready = await ready_states(cluster)
            assert all(r is not None for r in ready), "readiness not 200 while the replica lags"
            if all(r["checks"]["database_replica"] == "lagging" for r in ready if r is not None):
                marks.setdefault("all_lagging", asked)
            await asyncio.sleep(0.1)
        await cluster.replica.fetchval("SELECT pg_wal_replay_resume()")
        marks["resumed"] = time.monotonic()
        while time.monotonic() < marks["resumed"] + 10:
            ready = await ready_states(cluster)
            if all(r is not None and r["checks"]["database_replica"] == "ok" for r in ready):
                marks["all_ok"] = time.monotonic()
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)

    lagging_before = sum(
        metric(i.url, 'db_client_reads_total{db_instance_role="primary",reason="replica_lagging"}')
        for i in cluster.instances
    )
    async with httpx.AsyncClient(base_url=cluster.url_of_balancer, timeout=10) as plain_client:
        await under_load(cluster.url_of_balancer, work, log, drill)
    lagging_reads = (
        sum(
            metric(i.url, 'db_client_reads_total{db_instance_role="primary",reason="replica_lagging"}')
            for i in cluster.instances
        )
        - lagging_before
    )
    report(
        "replay paused",
        requests=len(log),
        users=len(acked),
        violations=len(violations),
        all_lagging_after_s=round(marks.get("all_lagging", float("nan")) - marks["paused"], 2),
        all_ok_after_resume_s=round(marks.get("all_ok", float("nan")) - marks["resumed"], 2),
        reads_on_primary_while_lagging=lagging_reads,
    )
    assert violations == [], violations[:5]
    assert "all_lagging" in marks
    assert marks["all_lagging"] - marks["paused"] < 2
    assert lagging_reads > 0
    assert "all_ok" in marks


async def test_pgbouncer_restarted_under_load(cluster: Rehearsal, consumer: Consumer) -> None:
    log: list[Timed] = []
    marks: dict[str, float] = {}

    async def work(client: httpx.AsyncClient, log: list[Timed]) -> None:
        user_id = await create(client, log)
        if user_id is not None:
            log.append(Timed(await send(client, "GET", f"/users/{user_id}")))
        else:
            await asyncio.sleep(0.02)

    async def drill() -> None:
        await asyncio.sleep(2)
        marks["stopped"] = time.monotonic()
        await off_loop(cluster.bouncer.halt)
        await asyncio.sleep(3)
        await off_loop(cluster.bouncer.start)
        marks["started"] = time.monotonic()
        await asyncio.sleep(6)

    await under_load(cluster.url_of_balancer, work, log, drill)
    not_ok = [t.outcome for t in log if not t.outcome.ok]
    wrong = [str(o) for o in not_ok if o.status != 503 or o.content_type != PROBLEM_JSON]
    after_start = [t.outcome for t in log if t.outcome.started > marks["started"]]
    first_ok = min((o.started for o in after_start if o.ok), default=float("inf"))
    settled = [o for o in after_start if o.started > marks["started"] + 4]
    acknowledged = {t.user_id for t in log if t.outcome.status == 201}
    stored = {str(r) for r in await _fetch_ids(cluster, list(acknowledged))}
    deadline = time.monotonic() + 15
    while (
        acknowledged - {e["subject"] for _, e in consumer.arrivals_of(acknowledged)}
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.1)
    delivered = {e["subject"] for _, e in consumer.arrivals_of(acknowledged) if e["type"] == "user.created"}
    report(
        "pgbouncer restarted",
        requests=len(log),
        problems_503=len(not_ok),
        other_failures=len(wrong),
        first_2xx_after_start_s=round(first_ok - marks["started"], 2),
        failures_5s_after_start=sum(not o.ok for o in settled),
        acknowledged_creates=len(acknowledged),
        stored=len(stored),
        delivered=len(delivered),
    )
    assert wrong == [], wrong[:5]
    assert not_ok, "the restart interrupted nothing"
    assert first_ok - marks["started"] < 5
    assert settled
    assert all(o.ok for o in settled), [str(o) for o in settled if not o.ok][:5]
    assert acknowledged - stored == set(), "acknowledged creates are missing"
    assert acknowledged - delivered == set(), "acknowledged creates whose event never arrived"


async def _fetch_ids(cluster: Rehearsal, ids: list[str | None]) -> list[object]:
    conn = await cluster.primary.connect("users")
    try:
        rows = await conn.fetch("SELECT id FROM users WHERE id = ANY($1::uuid[])", ids)
    finally:
        await conn.close()
    return [r["id"] for r in rows]
