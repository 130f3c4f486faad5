"""vector/vector.yaml: the remap program run by Vector's VRL engine on real-looking lines, and the sinks."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from vrl_python import VRLRuntime

from observability.bundle import PROMETHEUS_CONFIG, compose_config, load_yaml

from .support import bind_mount
from .vrl import (
    REMAP,
    ROUTE,
    TemplateError,
    loki_sinks,
    remap_source,
    render_template,
    route_outputs,
    run_vector_remap,
    ship_to_loki,
    vector_config,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
LEVELS = {"debug", "info", "warning", "error", "critical", "unknown"}
STREAM_LABELS = {"service", "service_name", "level", "compose_project"}


def service_line(**fields: Any) -> str:
    """A line as the service writes it (orjson: compact separators)."""
    entry = {
        "timestamp": "2026-11-26T17:04:26.123456Z",
        "level": "info",
        "event": "request",
        "logger": "user_service.access",
        "service": "user-service",
    }
    entry.update(fields)
    return json.dumps({k: v for k, v in entry.items() if v is not None}, separators=(",", ":"))


REQUEST_LINE = service_line(
    request_id="9d7c2a8e6f0b4c1d",
    trace_id=TRACE_ID,
    span_id=SPAN_ID,
    method="GET",
    route="/users/{user_id}",
    path="/users/0b0e6e9c-6f1c-4c1a-9a53-4d1f2f6b5a10",
    status=200,
    duration_ms=1.23,
    client="127.0.0.1:5555",
)
STARTUP_LINE = service_line(
    event="application started", logger="user_service.main", host="0.0.0.0", port=5000
)
TRACEBACK = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: boom'
ERROR_LINE = service_line(
    level="error",
    event="unhandled error",
    logger="user_service.presentation",
    request_id="1f2e3d4c5b6a7988",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_id="b7ad6b7169203331",
    exception=TRACEBACK,
)


def test_the_remap_program_compiles() -> None:
    diagnostic = VRLRuntime.check_syntax(remap_source())
    assert diagnostic is None, diagnostic.formatted_message if diagnostic else ""


def test_the_remap_program_has_no_dollar_sign() -> None:
    """Vector interpolates environment variables ($VAR, ${VAR}) in the whole file, VRL included."""
    assert "$" not in remap_source()


def test_the_route_condition_compiles() -> None:
    for condition in vector_config()["transforms"][ROUTE]["route"].values():
        assert VRLRuntime.check_syntax(condition) is None, condition


def test_a_request_line_keeps_its_text_and_yields_labels_and_trace_ids() -> None:
    event = run_vector_remap(REQUEST_LINE)
    assert event["message"] == REQUEST_LINE
    assert event["service"] == "api"
    assert event["service_name"] == "user-service"  # service.name, as in the traces
    assert event["compose_project"] == "user-service"
    assert event["level"] == "info"
    assert event["trace_id"] == TRACE_ID
    assert event["span_id"] == SPAN_ID
    assert event["timestamp"] == "2026-11-26 17:04:26.123456 UTC"  # the line's own time, parsed


def test_a_request_line_reaches_loki_with_trace_ids_as_structured_metadata() -> None:
    (entry,) = ship_to_loki(REQUEST_LINE)
    assert entry.sink == "loki_traced"
    assert entry.labels == {
        "service": "api",
        "service_name": "user-service",
        "level": "info",
        "compose_project": "user-service",
    }
    assert entry.structured_metadata == {"trace_id": TRACE_ID, "span_id": SPAN_ID}
    assert entry.line == REQUEST_LINE


def test_a_line_outside_a_request_has_no_trace_ids() -> None:
    event = run_vector_remap(STARTUP_LINE)
    assert "trace_id" not in event
    assert "span_id" not in event
    (entry,) = ship_to_loki(STARTUP_LINE)
    assert entry.sink == "loki"
    assert entry.structured_metadata == {}
    assert entry.labels["level"] == "info"
    assert entry.line == STARTUP_LINE


def test_an_error_line_with_a_traceback_is_kept_whole() -> None:
    event = run_vector_remap(ERROR_LINE)
    assert event["level"] == "error"
    assert event["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    (entry,) = ship_to_loki(ERROR_LINE)
    assert entry.line == ERROR_LINE
    assert json.loads(entry.line)["exception"] == TRACEBACK


@pytest.mark.parametrize(
    "line",
    [
        "Traceback (most recent call last):",
        "plain text from a library that printed to stdout",
        '{"timestamp": "2026-11-26T17:04:26Z", "level": "info", "event": "cut sho',
        "[1, 2, 3]",
        '"a json string"',
        "",
    ],
)
def test_a_line_that_is_not_a_json_object_is_kept_as_text(line: str) -> None:
    event = run_vector_remap(line)
    assert event["message"] == line
    assert event["level"] in LEVELS
    assert "trace_id" not in event
    (entry,) = ship_to_loki(line)
    assert entry.line == line
    assert set(entry.labels) == STREAM_LABELS


@pytest.mark.parametrize(
    ("container", "line", "level"),
    [
        ("user-service-postgres-1", "2026-11-26 17:00:00.000 UTC [1] LOG:  database system is ready", "info"),
        (
            "user-service-postgres-1",
            '2026-11-26 17:00:01.000 UTC [70] ERROR:  relation "x" does not exist',
            "error",
        ),
        (
            "user-service-postgres-1",
            "2026-11-26 17:00:02.000 UTC [70] FATAL:  password authentication failed",
            "critical",
        ),
        (
            "user-service-rabbitmq-1",
            "2026-11-26 17:00:00.123456+00:00 [info] <0.230.0> Server startup complete",
            "info",
        ),
        (
            "user-service-rabbitmq-1",
            "2026-11-26 17:00:00.123456+00:00 [warning] <0.9.0> memory alarm",
            "warning",
        ),
        ("user-service-loki-1", 'level=warn ts=2026-11-26T17:00:00Z caller=x.go:1 msg="slow"', "warning"),
        ("user-service-grafana-1", 'logger=server t=2026-11-26T17:00:00Z level=error msg="failed"', "error"),
        (
            "user-service-vector-1",
            "2026-11-26T17:00:00.000000Z  INFO vector::app: Log level is enabled.",
            "info",
        ),
        ("user-service-api-1", "no level in this line at all", "unknown"),
    ],
)
def test_other_containers_lines_get_a_level_from_their_text(container: str, line: str, level: str) -> None:
    event = run_vector_remap(line, container)
    assert event["level"] == level
    assert event["service"] == container.split("-")[-2]
    service_name = "user-service" if event["service"] == "api" else event["service"]
    assert event["service_name"] == service_name
    assert event["message"] == line


@pytest.mark.parametrize(
    ("written", "label"),
    [
        ("debug", "debug"),
        ("info", "info"),
        ("warning", "warning"),
        ("warn", "warning"),
        ("error", "error"),
        ("critical", "critical"),
        ("CRITICAL", "critical"),
        ("exception", "error"),
        ("fatal", "critical"),
        ("verbose", "unknown"),
        (None, "unknown"),
        (42, "unknown"),
    ],
)
def test_the_level_label_takes_one_of_six_values(written: Any, label: str) -> None:
    assert run_vector_remap(service_line(level=written))["level"] == label


@pytest.mark.parametrize(
    ("trace_id", "span_id"),
    [
        ("00000000000000000000000000000000", SPAN_ID),  # an invalid (all-zero) trace id
        (TRACE_ID[:-1], SPAN_ID),
        (TRACE_ID, SPAN_ID + "0"),
        ("zz" + TRACE_ID[2:], SPAN_ID),
        (TRACE_ID, None),
        (12345, SPAN_ID),
    ],
)
def test_malformed_trace_ids_never_become_metadata(trace_id: Any, span_id: Any) -> None:
    line = service_line(trace_id=trace_id, span_id=span_id)
    event = run_vector_remap(line)
    assert "trace_id" not in event
    assert "span_id" not in event
    (entry,) = ship_to_loki(line)
    assert entry.sink == "loki"
    assert entry.line == line


def test_upper_case_trace_ids_are_normalised() -> None:
    event = run_vector_remap(service_line(trace_id=TRACE_ID.upper(), span_id=SPAN_ID.upper()))
    assert (event["trace_id"], event["span_id"]) == (TRACE_ID, SPAN_ID)


def test_a_container_without_compose_labels_is_still_labelled() -> None:
    event = run_vector_remap("hello", "stray", service="", project="")
    assert (event["service"], event["service_name"], event["compose_project"]) == ("unknown",) * 3


@pytest.mark.parametrize("container", ["user-service-api-1", "user-service-migrate-1"])
@pytest.mark.parametrize("line", [REQUEST_LINE, "Traceback (most recent call last):"])
def test_every_line_of_the_service_has_service_name_user_service(container: str, line: str) -> None:
    """JSON or not, a line of the service's containers is in Loki's service `user-service`, the name its
    traces carry (OTEL_SERVICE_NAME), never the compose service's name."""
    (entry,) = ship_to_loki(line, container)
    otel_name = compose_config()["services"]["api"]["environment"]["OTEL_SERVICE_NAME"]
    assert entry.labels["service_name"] == otel_name == "user-service"


def test_every_line_reaches_exactly_one_loki_sink_and_renders_every_template() -> None:
    lines = [
        REQUEST_LINE,
        STARTUP_LINE,
        ERROR_LINE,
        "text",
        service_line(level=None),
        service_line(trace_id=TRACE_ID),
    ]
    for line in lines:
        entries = ship_to_loki(line)  # raises TemplateError on a field a template names but the event lacks
        assert len(entries) == 1, line
        assert entries[0].labels["level"] in LEVELS


def test_the_template_renderer_fails_like_vector_on_a_missing_field() -> None:
    with pytest.raises(TemplateError):
        render_template("{{ trace_id }}", {"message": "x"})


# --------------------------------------------------------------------------------------------------------
# The configuration around the remap program
# --------------------------------------------------------------------------------------------------------
def test_the_loki_sinks_use_only_low_cardinality_labels() -> None:
    sinks = loki_sinks()
    assert set(sinks) == {"loki", "loki_traced"}
    for name, sink in sinks.items():
        assert sink["labels"] == {
            "service": "{{ service }}",
            "service_name": "{{ service_name }}",
            "level": "{{ level }}",
            "compose_project": "{{ compose_project }}",
        }, name
        assert sink["endpoint"] == "http://loki:3100", name
        assert sink["encoding"] == {"codec": "text"}, name
        assert sink["remove_label_fields"] is True, name
        assert sink["out_of_order_action"] == "accept", name
        assert sink["buffer"]["when_full"] == "block", name
        # Structured metadata rides on the protobuf push, which snappy compression selects.
        assert sink["compression"] == "snappy", name
        for template in sink["labels"].values():
            assert not re.search(r"trace|span|request|path|client|message", template), template


def test_trace_ids_are_structured_metadata_never_labels() -> None:
    sinks = loki_sinks()
    assert "structured_metadata" not in sinks["loki"]
    assert sinks["loki_traced"]["structured_metadata"] == {
        "trace_id": "{{ trace_id }}",
        "span_id": "{{ span_id }}",
    }
    assert sinks["loki"]["inputs"] == [f"{ROUTE}._unmatched"]
    assert sinks["loki_traced"]["inputs"] == [f"{ROUTE}.traced"]
    traced = run_vector_remap(REQUEST_LINE)
    untraced = run_vector_remap(STARTUP_LINE)
    assert route_outputs(traced) == [f"{ROUTE}.traced"]
    assert route_outputs(untraced) == [f"{ROUTE}._unmatched"]


def test_the_source_reads_this_projects_containers_only() -> None:
    config = vector_config()
    source = config["sources"]["docker"]
    assert source["type"] == "docker_logs"
    assert source["include_labels"] == ["com.docker.compose.project=${COMPOSE_PROJECT_NAME}"]
    assert config["transforms"][REMAP]["inputs"] == ["docker"]
    assert config["transforms"][REMAP]["drop_on_error"] is False
    vector = compose_config()["services"]["vector"]
    assert vector["environment"]["COMPOSE_PROJECT_NAME"] == "user-service"
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in vector["volumes"]
    assert bind_mount(vector, "vector/vector.yaml") == "/etc/vector/vector.yaml"
    assert vector["command"] == ["--config", "/etc/vector/vector.yaml"]
    assert config["data_dir"] == "/var/lib/vector"


def test_vector_exposes_its_own_metrics_to_prometheus() -> None:
    config = vector_config()
    assert config["sources"]["vector_metrics"]["type"] == "internal_metrics"
    exporter = config["sinks"]["prometheus"]
    assert exporter["type"] == "prometheus_exporter"
    assert exporter["inputs"] == ["vector_metrics"]
    port = exporter["address"].rpartition(":")[2]
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    assert jobs["vector"]["static_configs"] == [{"targets": [f"vector:{port}"]}]


def test_every_component_is_wired() -> None:
    config = vector_config()
    outputs = set(config["sources"]) | set(config["transforms"])
    outputs |= {f"{ROUTE}.{name}" for name in config["transforms"][ROUTE]["route"]} | {f"{ROUTE}._unmatched"}
    consumed: set[str] = set()
    for section in ("transforms", "sinks"):
        for name, component in config[section].items():
            for source in component["inputs"]:
                assert source in outputs, f"{name} reads unknown {source}"
                consumed.add(source)
    assert set(config["sources"]) <= consumed
