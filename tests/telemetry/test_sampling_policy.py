"""Which traces the real service exports: failed, slow, trusted, or in the ratio, and nothing else; the
exemplars, log lines and published events agree with that decision.

Each test runs its own service and stops it (SIGTERM) before it looks at what arrived: the shutdown
flushes every kept span, so what the receiver lacks then was dropped, not late.
"""

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from loadtest.service_process import CLI, ServiceProcess
from tests.support.broker import Consumer
from tests.support.evidence import log_lines
from tests.support.fault_proxy import FaultProxy
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.private_db import proxied_url
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.telemetry.sampling import in_ratio, ratio_bound

SERVER, PRODUCER = 2, 4  # OTLP SpanKind values


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@contextmanager
def service(receiver: OtlpReceiver, database_url: str, **env: str) -> Iterator[ServiceProcess]:
    base = {
        "DATABASE_URL": database_url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "TRACE_SLOW_SECONDS": "30",
    }
    with ServiceProcess({**base, **env}) as process:
        yield process


def access_lines(process: ServiceProcess) -> list[dict[str, Any]]:
    return [line for line in log_lines(process.log_path) if line.get("event") == "request"]


def stopped(process: ServiceProcess) -> list[dict[str, Any]]:
    """Stop the service (its kept spans are flushed on the way out); its access lines."""
    assert process.stop() == 0
    lines = log_lines(process.log_path)
    cut_off = [line for line in lines if line["event"].startswith("trace export did not finish")]
    assert cut_off == [], "the flush at shutdown ran out of time: what is missing was cut off, not dropped"
    return [line for line in lines if line.get("event") == "request"]


def wait_for_publishes(receiver: OtlpReceiver, trace_ids: set[str], timeout: float = 20) -> None:
    """Until a publish span of each trace arrived. A consumer can see a message before its publish span
    ends (at the broker's confirm), so a stop right after the delivery would race the span's export."""
    deadline = time.monotonic() + timeout
    while {s.trace_id for s in receiver.received() if s.kind == PRODUCER} < trace_ids:
        assert time.monotonic() < deadline, "the publish spans of kept traces did not arrive"
        time.sleep(0.05)


def exported_servers(receiver: OtlpReceiver) -> dict[str, ReceivedSpan]:
    return {s.trace_id: s for s in receiver.received() if s.kind == SERVER}


def caller() -> tuple[str, str]:
    return uuid.uuid4().hex, uuid.uuid4().hex[:16]


def traceparents_of(consumer: Consumer, user_ids: set[str]) -> list[str]:
    """The `traceparent` of each message about these users (the broker is shared: others publish too)."""
    return [
        str(message.headers["traceparent"])
        for message in consumer.messages
        if orjson.loads(message.body)["subject"] in user_ids
    ]


def sampled_flag(traceparent: object) -> bool:
    """The W3C sampled bit (the SDK also sets the random bit, 0x02)."""
    return bool(int(str(traceparent).rsplit("-", 1)[1], 16) & 1)


def create(client: httpx.Client, **headers: str) -> httpx.Response:
    body = {"username": f"u{uuid.uuid4().hex[:12]}", "first_name": "Sam", "last_name": "Pled"}
    return client.post("/users/", json=body, headers=headers)


def test_fast_requests_are_kept_at_the_ratio_decided_by_trace_id(
    receiver: OtlpReceiver, database_url: str
) -> None:
    with service(receiver, database_url, TRACE_SAMPLE_RATIO="0.5") as process:
        with httpx.Client(base_url=process.url) as client:
            for _ in range(400):
                assert client.get(f"/users/{uuid.uuid4()}").status_code == 404
        lines = stopped(process)
    assert len(lines) == 400
    kept = {line["trace_id"] for line in lines if line["trace_sampled"]}
    bound = ratio_bound(0.5)
    assert kept == {line["trace_id"] for line in lines if in_ratio(int(line["trace_id"], 16), bound)}
    assert 140 <= len(kept) <= 260  # binomial(400, 0.5): six standard deviations either side
    assert set(exported_servers(receiver)) == kept
    dropped = {line["trace_id"] for line in lines} - kept
    assert not [s for s in receiver.received() if s.trace_id in dropped]  # not even their SQL spans


@pytest.mark.parametrize(("ratio", "expected"), [("0", 0), ("1", 40)])
def test_ratio_zero_keeps_no_fast_request_and_one_keeps_all(
    receiver: OtlpReceiver, database_url: str, ratio: str, expected: int
) -> None:
    with service(receiver, database_url, TRACE_SAMPLE_RATIO=ratio) as process:
        with httpx.Client(base_url=process.url) as client:
            for _ in range(40):
                assert client.get("/users/?limit=1").status_code == 200
        lines = stopped(process)
    assert [line["trace_sampled"] for line in lines] == [expected > 0] * 40
    assert len(exported_servers(receiver)) == expected


def test_every_5xx_is_kept_and_the_fast_2xx_around_it_are_not(
    receiver: OtlpReceiver, database_url: str, db_proxy: FaultProxy
) -> None:
    proxy = db_proxy
    env = {"DATABASE_URL": proxied_url(proxy, database_url), "DB_POOL_TIMEOUT": "0.5"}
    with service(receiver, database_url, TRACE_SAMPLE_RATIO="0", **env) as process:
        with httpx.Client(base_url=process.url) as client:
            for _ in range(5):
                assert client.get("/users/?limit=1").status_code == 200
            proxy.cut()  # the database is gone: every read is a 503
            for _ in range(5):
                assert client.get(f"/users/{uuid.uuid4()}").status_code == 503
        lines = stopped(process)
    failed = {line["trace_id"] for line in lines if line["status"] == 503}
    assert len(failed) == 5
    assert all(line["trace_sampled"] is (line["status"] == 503) for line in lines)
    servers = exported_servers(receiver)
    assert set(servers) == failed
    assert all(s.attributes["error.type"] == "503" for s in servers.values())


async def test_every_slow_request_is_kept_with_the_publish_of_its_event(
    receiver: OtlpReceiver, database_url: str, broker_url: str, consumer: Consumer, clean_db: Database
) -> None:
    env = {"TRACE_SAMPLE_RATIO": "0", "TRACE_SLOW_SECONDS": "0.000001", "BROKER_URL": broker_url}
    with service(receiver, database_url, **env) as process:
        with httpx.Client(base_url=process.url) as client:
            ids = {create(client).json()["id"] for _ in range(10)}
            for user_id in ids:
                assert client.get(f"/users/{user_id}").status_code == 200
        await consumer.wait_for(10, ids)
        wait_for_publishes(
            receiver, {line["trace_id"] for line in access_lines(process) if line["method"] == "POST"}
        )
        lines = stopped(process)
    assert len(lines) == 20
    assert all(line["trace_sampled"] for line in lines)
    servers = exported_servers(receiver)
    assert {line["trace_id"] for line in lines} == set(servers)
    # Slow already at its commit: the outbox row says kept, and the relay exported the publish.
    publishes = [s for s in receiver.received() if s.kind == PRODUCER]
    assert len({s.attributes["messaging.message.id"] for s in publishes}) == 10
    assert {s.trace_id for s in publishes} <= set(servers)
    traceparents = traceparents_of(consumer, ids)
    assert len(traceparents) >= 10
    assert all(sampled_flag(traceparent) for traceparent in traceparents)


async def test_the_publish_span_is_exported_exactly_when_the_commit_said_kept(
    receiver: OtlpReceiver, database_url: str, broker_url: str, consumer: Consumer, clean_db: Database
) -> None:
    env = {"TRACE_SAMPLE_RATIO": "0.5", "BROKER_URL": broker_url, "OUTBOX_POLL_INTERVAL": "0.2"}
    with service(receiver, database_url, **env) as process:
        with httpx.Client(base_url=process.url) as client:
            ids = {create(client).json()["id"] for _ in range(30)}
        await consumer.wait_for(30, ids)
        wait_for_publishes(
            receiver, {line["trace_id"] for line in access_lines(process) if line["trace_sampled"]}
        )
        lines = stopped(process)
    kept = {line["trace_id"] for line in lines if line["trace_sampled"]}
    assert 0 < len(kept) < 30  # both cases occur (binomial(30, 0.5): 1 in 2**29 to fail)
    spans = receiver.received()
    publishes = {s.trace_id: s for s in spans if s.kind == PRODUCER}
    assert set(publishes) == kept
    for trace_id, publish in publishes.items():
        assert publish.parent_span_id in {s.span_id for s in spans if s.trace_id == trace_id}
    traceparents = traceparents_of(consumer, ids)
    assert len(traceparents) >= 30
    for traceparent in traceparents:
        assert sampled_flag(traceparent) is (traceparent.split("-")[1] in kept)  # the same decision


def test_every_exemplar_opens_an_exported_trace(receiver: OtlpReceiver, database_url: str) -> None:
    with service(receiver, database_url, TRACE_SAMPLE_RATIO="0.5") as process:
        with httpx.Client(base_url=process.url) as client:
            for i in range(120):
                if i % 3 == 0:
                    assert create(client).status_code == 201
                else:
                    client.get(f"/users/{uuid.uuid4()}" if i % 3 == 1 else "/users/?limit=2")
            text = client.get("/metrics", headers={"accept": "application/openmetrics-text"}).text
        lines = stopped(process)
    exemplars = set(
        re.findall(r'^http_server_request_duration_seconds_bucket\{.*# \{trace_id="(\w{32})"\}', text, re.M)
    )
    assert exemplars
    dropped = {line["trace_id"] for line in lines if not line["trace_sampled"]}
    assert dropped  # some requests were not kept, and none of them is an exemplar
    assert exemplars <= set(exported_servers(receiver))
    assert not exemplars & dropped


def test_ignore_starts_a_new_trace_linked_to_the_callers(receiver: OtlpReceiver, database_url: str) -> None:
    trace_id, parent = caller()
    with service(receiver, database_url, TRACE_SAMPLE_RATIO="1") as process:
        response = httpx.get(
            f"{process.url}/users/?limit=1", headers={"traceparent": f"00-{trace_id}-{parent}-00"}
        )
        assert response.status_code == 200
        (line,) = stopped(process)
    assert line["trace_id"] != trace_id
    (server,) = exported_servers(receiver).values()
    assert server.trace_id == line["trace_id"]
    assert server.parent_span_id == ""
    assert server.links == [(trace_id, parent)]


async def test_ignore_does_not_let_a_caller_force_a_trace_or_plant_its_trace_id(
    receiver: OtlpReceiver, database_url: str, clean_db: Database
) -> None:
    trace_id, parent = caller()
    with service(receiver, database_url, TRACE_SAMPLE_RATIO="0") as process:
        with httpx.Client(base_url=process.url) as client:
            user_id = create(client, traceparent=f"00-{trace_id}-{parent}-01").json()["id"]
            text = client.get("/metrics", headers={"accept": "application/openmetrics-text"}).text
        (line,) = stopped(process)
    assert line["trace_id"] != trace_id
    assert line["trace_sampled"] is False
    assert receiver.received() == []
    assert trace_id not in text
    connection = await asyncpg.connect(database_url)
    try:
        stored = await connection.fetchval(
            "SELECT traceparent FROM outbox WHERE aggregate_id = $1", uuid.UUID(user_id)
        )
    finally:
        await connection.close()
    assert str(stored).split("-")[1] == line["trace_id"]
    assert not sampled_flag(stored)


def test_trust_continues_the_callers_trace_and_its_decision(
    receiver: OtlpReceiver, database_url: str
) -> None:
    (sampled, sampled_parent), (unsampled, unsampled_parent) = caller(), caller()
    env = {"TRACE_SAMPLE_RATIO": "0", "TRACEPARENT_TRUST": "trust"}
    with service(receiver, database_url, **env) as process:
        with httpx.Client(base_url=process.url) as client:
            client.get("/users/?limit=1", headers={"traceparent": f"00-{sampled}-{sampled_parent}-01"})
            client.get("/users/?limit=1", headers={"traceparent": f"00-{unsampled}-{unsampled_parent}-00"})
        lines = stopped(process)
    assert [(line["trace_id"], line["trace_sampled"]) for line in lines] == [
        (sampled, True),
        (unsampled, False),
    ]
    (server,) = exported_servers(receiver).values()
    assert (server.trace_id, server.parent_span_id, server.links) == (sampled, sampled_parent, [])


def test_limit_trusts_at_most_its_budget_a_second(receiver: OtlpReceiver, database_url: str) -> None:
    env = {"TRACE_SAMPLE_RATIO": "0", "TRACEPARENT_TRUST": "limit", "TRACEPARENT_TRUST_LIMIT": "2"}
    callers = [caller() for _ in range(12)]
    with service(receiver, database_url, **env) as process:
        with httpx.Client(base_url=process.url) as client:
            started = time.monotonic()
            for trace_id, parent in callers:
                client.get("/users/?limit=1", headers={"traceparent": f"00-{trace_id}-{parent}-01"})
            elapsed = time.monotonic() - started
        lines = stopped(process)
    asked = {trace_id for trace_id, _ in callers}
    continued = [line["trace_id"] for line in lines if line["trace_id"] in asked]
    assert 2 <= len(continued) <= 2 + int(elapsed * 2) + 1  # a burst of 2, then 2 a second
    assert all(line["trace_sampled"] is (line["trace_id"] in asked) for line in lines)
    assert set(exported_servers(receiver)) == set(continued)


async def test_the_relay_alone_exports_the_publish_of_kept_rows_only(
    receiver: OtlpReceiver, database_url: str, broker_url: str, consumer: Consumer, clean_db: Database
) -> None:
    """`user-service relay` in its own process: the stored flag is all it knows of each request."""
    with service(receiver, database_url, TRACE_SAMPLE_RATIO="0.5") as process:  # no broker: rows wait
        with httpx.Client(base_url=process.url) as client:
            ids = {create(client).json()["id"] for _ in range(20)}
        lines = stopped(process)
    kept = {line["trace_id"] for line in lines if line["trace_sampled"]}
    assert 0 < len(kept) < 20  # both cases occur (binomial(20, 0.5): 1 in 2**19 to fail)
    receiver.spans.clear()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "TRACE_SAMPLE_RATIO": "1",  # the relay follows the rows, not its own ratio
        "LOG_FORMAT": "json",
    }
    relay = subprocess.Popen([*CLI, "relay"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await consumer.wait_for(20, ids)
        wait_for_publishes(receiver, kept)
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(15) == 0
    publishes = {s.trace_id for s in receiver.received() if s.kind == PRODUCER}
    assert publishes == kept
