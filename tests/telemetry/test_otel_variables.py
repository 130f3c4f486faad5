"""The standard OTEL_* variables do what the SDK documents, on the real service; a bad one stops the
start with one line naming it."""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from loadtest.service_process import ServiceProcess
from tests.support.evidence import log_lines
from tests.support.otlp import OtlpReceiver
from tests.support.otlp_grpc import GrpcOtlpReceiver

SERVER = 2


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@contextmanager
def service(database_url: str, **env: str) -> Iterator[ServiceProcess]:
    base = {"DATABASE_URL": database_url, "OTEL_BSP_SCHEDULE_DELAY": "50", "TRACE_SAMPLE_RATIO": "1"}
    with ServiceProcess({**base, **env}) as process:
        yield process


def serve_and_stop(process: ServiceProcess, requests: int = 3) -> list[dict[str, Any]]:
    """A few requests, then SIGTERM (which flushes what is kept); the access lines."""
    with httpx.Client(base_url=process.url) as client:
        for _ in range(requests):
            assert client.get("/users/?limit=1").status_code == 200
    assert process.stop() == 0
    return [line for line in log_lines(process.log_path) if line.get("event") == "request"]


def test_exporter_none_exports_nothing_and_logs_keep_their_trace_ids(
    receiver: OtlpReceiver, database_url: str
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_EXPORTER": "none"}
    with service(database_url, **env) as process:
        lines = serve_and_stop(process)
    assert receiver.received() == []
    assert len(lines) == 3
    assert all(len(line["trace_id"]) == 32 for line in lines)


def test_exporter_console_prints_the_spans(database_url: str) -> None:
    with service(database_url, OTEL_TRACES_EXPORTER="console") as process:
        with httpx.Client(base_url=process.url) as client:
            assert client.get("/users/?limit=1").status_code == 200
        assert process.stop() == 0
        output = process.output()
    trace_ids = [
        line.split('"trace_id":"')[1][:32] for line in output.splitlines() if '"event":"request"' in line
    ]
    assert len(trace_ids) == 1
    assert f'"trace_id": "0x{trace_ids[0]}"' in output  # the console exporter's form
    assert '"name": "GET /users"' in output


def test_grpc_reaches_a_grpc_receiver_with_the_resource_variables(database_url: str) -> None:
    with GrpcOtlpReceiver() as grpc_receiver:
        env = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": grpc_receiver.endpoint,
            "OTEL_SERVICE_NAME": "users-edge",
            "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=identity,team=users%20core",
        }
        with service(database_url, **env) as process:
            lines = serve_and_stop(process)
        servers = [s for s in grpc_receiver.received() if s.kind == SERVER]
    assert {s.trace_id for s in servers} == {line["trace_id"] for line in lines}
    resource = servers[0].resource
    assert resource["service.name"] == "users-edge"
    assert resource["service.namespace"] == "identity"
    assert resource["team"] == "users core"
    assert resource["deployment.environment.name"] == "test"
    assert "deployment.environment" not in resource  # the deprecated name is gone


@pytest.mark.parametrize(
    ("sampler", "policy", "exported"),
    [
        ("always_off", {"TRACE_SLOW_SECONDS": "0.000001"}, False),  # slow, yet the SDK's sampler rules
        ("always_on", {"TRACE_SAMPLE_RATIO": "0"}, True),
    ],
)
def test_otel_traces_sampler_replaces_the_policy(
    receiver: OtlpReceiver, database_url: str, sampler: str, policy: dict[str, str], exported: bool
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER": sampler, **policy}
    with service(database_url, **env) as process:
        lines = serve_and_stop(process)
    assert [line["trace_sampled"] for line in lines] == [exported] * 3
    servers = {s.trace_id for s in receiver.received() if s.kind == SERVER}
    assert servers == ({line["trace_id"] for line in lines} if exported else set())


def test_sdk_disabled_serves_without_tracing(receiver: OtlpReceiver, database_url: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SDK_DISABLED": "true"}
    with service(database_url, **env) as process:
        lines = serve_and_stop(process)
    assert receiver.received() == []
    assert len(lines) == 3
    assert not any("trace_id" in line for line in lines)


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACE"))}
    return subprocess.run(
        [sys.executable, "-m", "user_service.main.cli", *args],
        env={**environ, "DATABASE_URL": "postgresql://u@127.0.0.1:1/x", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", [(), ("relay",)])
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "jaeger"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team"),
        ("OTEL_PROPAGATORS", "tracecontext,xray"),
        ("OTEL_SDK_DISABLED", "perhaps"),
        ("TRACE_SAMPLE_RATIO", "1.5"),
        ("TRACE_SLOW_SECONDS", "soon"),
        ("TRACEPARENT_TRUST", "everyone"),
    ],
)
def test_a_bad_tracing_value_stops_the_start_with_one_line(
    command: tuple[str, ...], variable: str, value: str
) -> None:
    result = run_cli(*command, BROKER_URL="amqp://u:p@127.0.0.1:1/", **{variable: value})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"user-service: invalid setting {variable}: "), line
