"""Telemetry of the real service process: JSON logs with trace ids, OTLP traces across the broker,
Prometheus metrics with route templates and exemplars, and sums across several workers."""

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.service_process import ServiceProcess
from tests.support.broker import Consumer
from tests.support.evidence import log_lines
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.workers import run_dir, sample_of_file, writers
from user_service.infrastructure.db.database import Database

SERVER, CLIENT, PRODUCER = 2, 3, 4  # OTLP SpanKind values
HEX32 = re.compile(r"[0-9a-f]{32}")
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def service(database_url: str, broker_url: str, receiver: OtlpReceiver) -> Iterator[ServiceProcess]:
    env = {
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OUTBOX_POLL_INTERVAL": "0.2",
        # Every trace kept and every traceparent continued: these tests follow whole traces.
        "TRACE_SAMPLE_RATIO": "1",
        "TRACEPARENT_TRUST": "trust",
    }
    with ServiceProcess(env) as process:
        yield process


def wait_for(predicate: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def create(service: ServiceProcess, username: str, **headers: str) -> httpx.Response:
    body = {"username": username, "first_name": "Tele", "last_name": "Metry"}
    return httpx.post(f"{service.url}/users/", json=body, headers=headers)


def test_every_stdout_line_is_json_with_the_common_fields(
    service: ServiceProcess, clean_db: Database
) -> None:
    create(service, "json_lines")
    lines = log_lines(service.log_path)  # raises if any line is not JSON
    assert lines
    for line in lines:
        assert {"timestamp", "level", "event", "logger", "service"} <= line.keys(), line
        assert line["service"] == "user-service"
        assert RFC3339_UTC.fullmatch(line["timestamp"]), line["timestamp"]
        assert line["level"] in {"debug", "info", "warning", "error", "critical"}


def test_one_access_line_per_request_with_the_exported_trace_id(
    service: ServiceProcess, receiver: OtlpReceiver, clean_db: Database
) -> None:
    response = create(service, "logged", **{"x-request-id": "log-1"})
    assert response.status_code == 201
    lines = wait_for(
        lambda: [line for line in log_lines(service.log_path) if line.get("request_id") == "log-1"]
    )
    (access,) = [line for line in lines if line["event"] == "request"]
    assert access["logger"] == "user_service.access"
    assert (access["method"], access["route"], access["path"], access["status"]) == (
        "POST",
        "/users",
        "/users/",
        201,
    )
    assert access["level"] == "info"
    assert access["duration_ms"] > 0
    assert access["client"].startswith("127.0.0.1:")
    assert HEX32.fullmatch(access["trace_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", access["span_id"])
    spans = wait_for(lambda: [s for s in receiver.trace(access["trace_id"]) if s.kind == SERVER])
    assert spans[0].span_id == access["span_id"]


def test_client_errors_log_without_traceback(service: ServiceProcess, clean_db: Database) -> None:
    httpx.get(f"{service.url}/no/such/{uuid.uuid4()}", headers={"x-request-id": "log-404"})
    httpx.post(f"{service.url}/users/", json={"username": "1"}, headers={"x-request-id": "log-422"})
    create(service, "dup")
    create(service, "dup", **{"x-request-id": "log-409"})
    for request_id, status in (("log-404", 404), ("log-422", 422), ("log-409", 409)):
        lines = wait_for(
            lambda rid=request_id: [x for x in log_lines(service.log_path) if x.get("request_id") == rid]
        )
        assert [x["status"] for x in lines if x["event"] == "request"] == [status]
        assert all(x["level"] in {"info", "warning"} for x in lines)
        assert not any("exception" in x for x in lines)


async def test_a_create_is_one_trace_request_sql_publish_and_consumer(
    service: ServiceProcess, receiver: OtlpReceiver, consumer: Consumer, clean_db: Database
) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    response = create(service, "traced", traceparent=f"00-{trace_id}-{parent}-01")
    user_id = response.json()["id"]

    def whole_trace() -> list[ReceivedSpan] | None:
        spans = receiver.trace(trace_id)
        kinds = {s.kind for s in spans}
        return spans if {SERVER, PRODUCER} <= kinds else None

    spans: list[ReceivedSpan] = wait_for(whole_trace)
    (server,) = [s for s in spans if s.kind == SERVER]  # exactly one server span
    assert server.name == "POST /users"
    assert server.parent_span_id == parent  # the incoming traceparent is honoured
    assert server.resource["service.name"] == "user-service"
    assert server.resource["service.version"] == "1.0.0"
    assert server.resource["deployment.environment.name"] == "test"
    sql = [s for s in spans if s.kind == CLIENT and s.attributes.get("db.system.name") == "postgresql"]
    assert all(s.parent_span_id == server.span_id for s in sql)
    # A create is one statement: the user's row and its outbox row, atomic without a transaction.
    (write,) = sql
    statement = write.attributes["db.query.text"]
    assert "INSERT INTO users" in statement
    assert "INSERT INTO outbox" in statement
    assert write.name == write.attributes["db.operation.name"] == "INSERT"  # span metrics by statement type
    (publish,) = [s for s in spans if s.kind == PRODUCER]
    assert publish.name == "publish users"  # `{messaging.operation.name} {destination}`
    assert publish.attributes["messaging.operation.name"] == "publish"
    assert publish.attributes["messaging.operation.type"] == "send"
    assert publish.attributes["messaging.destination.name"] == "users"
    envelopes = await consumer.wait_for(1, {user_id})
    message = next(m for m in consumer.messages if m.message_id == envelopes[0]["id"])
    traceparent = str(message.headers["traceparent"])  # type: ignore[index]
    assert traceparent.split("-")[1] == trace_id  # a consumer continues the same trace
    assert traceparent.split("-")[2] == publish.span_id


def test_health_and_metrics_are_not_traced(service: ServiceProcess, receiver: OtlpReceiver) -> None:
    trace_id = uuid.uuid4().hex
    for path in ("/healthcheck", "/metrics", "/healthcheck/ready"):
        httpx.get(f"{service.url}{path}", headers={"traceparent": f"00-{trace_id}-{'1' * 16}-01"})
    time.sleep(0.5)
    assert [s for s in receiver.trace(trace_id) if s.kind == SERVER] == []


def test_sql_outside_a_traced_request_makes_no_span(service: ServiceProcess, receiver: OtlpReceiver) -> None:
    """The relay polls every 0.2 s, readiness pings and scrapes count rows: none of it becomes a trace."""
    for _ in range(3):
        assert httpx.get(f"{service.url}/healthcheck/ready").status_code == 200
        assert httpx.get(f"{service.url}/metrics").status_code == 200
    trace_id = uuid.uuid4().hex
    assert create(service, "marker", traceparent=f"00-{trace_id}-{'3' * 16}-01").status_code == 201
    wait_for(lambda: [s for s in receiver.trace(trace_id) if s.kind == SERVER])  # the last span to end
    time.sleep(0.3)  # and the relay polled and published meanwhile
    spans = receiver.received()
    by_id = {s.span_id: s for s in spans}
    sql = [s for s in spans if s.kind == CLIENT and s.attributes.get("db.system.name") == "postgresql"]
    assert sql  # the requests of this module did trace their statements
    orphans = [s.name for s in sql if by_id.get(s.parent_span_id) is None]
    assert orphans == []


def scrape(
    url: str, client: httpx.Client | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = (client or httpx).get(f"{url}/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_exactly_with_route_templates(service: ServiceProcess, clean_db: Database) -> None:
    before = scrape(service.url)
    ids = [create(service, f"m{i}").json()["id"] for i in range(3)]
    httpx.get(f"{service.url}/users/{ids[0]}")
    httpx.delete(f"{service.url}/users/{ids[1]}")
    for _ in range(2):
        httpx.get(f"{service.url}/scanner/{uuid.uuid4()}/wp-admin.php")
    after = scrape(service.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    count = "http_server_request_duration_seconds_count"
    assert delta(count, http_request_method="POST", http_route="/users", http_response_status_code="201") == 3
    assert (
        delta(
            count, http_request_method="GET", http_route="/users/{user_id}", http_response_status_code="200"
        )
        == 1
    )
    assert (
        delta(count, http_request_method="GET", http_route="unmatched", http_response_status_code="404") == 2
    )
    assert delta("user_events_committed_total", type="user.created") == 3
    assert delta("user_events_committed_total", type="user.deleted") == 1
    sql = {"db_system_name": "postgresql", "db_instance_role": "primary"}
    assert delta("db_client_operation_duration_seconds_count", db_operation_name="INSERT", **sql) == 3
    routes = {
        dict(labels).get("http_route") for (name, labels) in after if name.startswith("http_server_request")
    }
    assert not any(r and ("scanner" in r or re.search(r"[0-9a-f]{8}-", r)) for r in routes)
    assert value(after, "user_service_build_info", version="1.0.0") == 1
    assert value(after, "db_client_connection_max", db_client_connection_pool_name="primary") == 10
    assert ("process_resident_memory_bytes", ()) in after
    assert ("outbox_pending_events", ()) in after
    assert value(after, "outbox_relay_active") == 1
    assert value(after, "outbox_broker_connected") == 1


def test_openmetrics_carries_trace_id_exemplars(service: ServiceProcess, clean_db: Database) -> None:
    create(service, "exemplar")
    response = httpx.get(f"{service.url}/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    bucket = r'^http_server_request_duration_seconds_bucket\{[^}]*http_route="/users"[^}]*\} \S+ '
    exemplars = re.findall(bucket + r'# \{trace_id="([0-9a-f]{32})"\}', response.text, re.MULTILINE)
    assert exemplars


def test_readiness_reports_each_dependency(service: ServiceProcess) -> None:
    ready = httpx.get(f"{service.url}/healthcheck/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["checks"] == {
        "database": "ok",
        "database_pool": "ok",
        "database_replica": "disabled",
        "broker": "ok",
    }
    assert body["replica"]["state"] == "disabled"
    assert body["pool"]["max"] == 10
    assert body["pool"]["waiting"] == 0


def test_several_workers_add_up(database_url: str, clean_db: Database, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with ServiceProcess(env, ("--workers", "2")) as service:
        folder = run_dir(tmp_path, service.pid)

        def served() -> dict[int, float]:
            """GET /users answered by each process that wrote metrics, from its own file."""
            return {
                pid: sample_of_file(
                    folder / f"histogram_{pid}.db",
                    "http_server_request_duration_seconds_count",
                    http_request_method="GET",
                    http_route="/users",
                )
                for pid in writers(folder)
            }

        for i in range(10):
            assert create(service, f"w{i}").status_code == 201
        # New connections until both workers have answered some (which one accepts is the kernel's
        # choice), at most 300.
        gets = 0
        while gets < 300 and (gets < 30 or len([n for n in served().values() if n]) < 2):
            with httpx.Client() as fresh:
                assert fresh.get(f"{service.url}/users/?limit=1").status_code == 200
            gets += 1
        by_process = served()
        assert len([n for n in by_process.values() if n]) >= 2, by_process
        for _ in range(6):  # whichever worker answers, it reports the sum of both
            with httpx.Client() as fresh:
                samples = scrape(service.url, client=fresh)
            get_count = value(
                samples,
                "http_server_request_duration_seconds_count",
                http_request_method="GET",
                http_route="/users",
                http_response_status_code="200",
            )
            assert get_count == gets
            assert value(samples, "user_events_committed_total", type="user.created") == 10
            assert value(samples, "user_service_build_info", version="1.0.0") == 1
        # The files are the workers' only: the supervisor imports no metrics (its files made three
        # writers of two workers). A worker the supervisor replaced (one that answered no health ping in
        # time on a busy machine) leaves its files and its counts in the sums: the property is the sum of
        # what each process counted, not the number of files.
        assert service.pid not in writers(folder)
        assert sum(served().values()) == gets
    assert not folder.exists()  # a stopped server leaves no files behind for the next start


def test_a_change_traces_each_statement_of_its_transaction(
    service: ServiceProcess, receiver: OtlpReceiver, clean_db: Database
) -> None:
    user_id = create(service, "renamed").json()["id"]
    trace_id = uuid.uuid4().hex
    response = httpx.put(
        f"{service.url}/users/{user_id}/username",
        json={"username": "renamed_again"},
        headers={"traceparent": f"00-{trace_id}-{'2' * 16}-01"},
    )
    assert response.status_code == 200

    def statements() -> list[ReceivedSpan] | None:
        spans = receiver.trace(trace_id)
        sql = [s for s in spans if s.kind == CLIENT]
        return sql if len(sql) == 4 and any(s.kind == SERVER for s in spans) else None

    sql = wait_for(statements)
    assert sorted(s.attributes["db.operation.name"] for s in sql) == ["BEGIN", "COMMIT", "SELECT", "UPDATE"]
    (update,) = [s for s in sql if s.attributes["db.operation.name"] == "UPDATE"]
    assert "INSERT INTO outbox" in update.attributes["db.query.text"]  # the change and its event together
