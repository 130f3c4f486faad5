"""observability/otel-collector.yaml: the bundle's one OTLP endpoint, checked for its wiring.

No collector binary can run here, so `wiring_problems` checks what the collector would refuse or what
would silently lose data: a pipeline naming an undefined component, a component defined and never used,
a pipeline without memory_limiter first and batch, an exporter pointing at no compose service or at a port
that service does not listen on, a signal with no pipeline to its backend. The negative tests below break a
copy of the parsed config in each of those ways and require the checker to say so.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from .support import (
    LOKI_CONFIG,
    OTEL_COLLECTOR_CONFIG,
    TEMPO_CONFIG,
    bind_mount,
    compose_config,
    load_yaml,
)

SECTIONS = ("receivers", "processors", "exporters", "connectors")
SIGNALS = ("traces", "metrics", "logs")
# Which backend each signal goes to, and the path its exporter must use there.
BACKENDS = {"traces": ("tempo", ""), "metrics": ("prometheus", "/api/v1/write"), "logs": ("loki", "/otlp")}


def collector_config() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml(OTEL_COLLECTOR_CONFIG)
    return config


def _port(endpoint: str) -> int:
    return int(str(endpoint).rpartition(":")[2])


def _endpoints(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "endpoint" and isinstance(v, str)]
        return found + [e for k, v in node.items() if k != "endpoint" for e in _endpoints(v)]
    if isinstance(node, list):
        return [e for item in node for e in _endpoints(item)]
    return []


def listening_ports(compose: dict[str, Any], service: str) -> set[int]:
    """The ports a compose service listens on: its published container ports, and those its own
    configuration file opens (for the backends whose config this repository holds)."""
    svc = compose["services"][service]
    ports = {int(str(port).rpartition(":")[2]) for port in svc.get("ports", [])}
    if service == "tempo":
        tempo = load_yaml(TEMPO_CONFIG)
        ports |= {tempo["server"]["http_listen_port"], tempo["server"]["grpc_listen_port"]}
        ports |= {_port(e) for e in _endpoints(tempo["distributor"]["receivers"])}
    elif service == "loki":
        loki = load_yaml(LOKI_CONFIG)
        ports |= {loki["server"]["http_listen_port"], loki["server"]["grpc_listen_port"]}
    elif service == "prometheus":
        flags = [f for f in svc.get("command", []) if f.startswith("--web.listen-address=")]
        ports.add(_port(flags[0]) if flags else 9090)
    elif service == "otel-collector":
        ports |= {_port(e) for e in _endpoints(collector_config()["receivers"])}
    return ports


def _exporter_target(exporter: dict[str, Any]) -> tuple[str, int, str]:
    """(host, port, path) of an exporter's endpoint; a gRPC endpoint is host:port without a scheme."""
    endpoint = exporter.get("endpoint", "")
    if "://" not in endpoint:
        host, _, port = endpoint.rpartition(":")
        return host, int(port), ""
    url = urlsplit(endpoint)
    default = 443 if url.scheme == "https" else 80
    return url.hostname or "", url.port or default, url.path.rstrip("/")


def _pipeline_problems(config: dict[str, Any], used: dict[str, set[str]]) -> list[str]:
    """Each pipeline's components defined, at least one receiver and exporter, memory_limiter first, batch."""
    problems = []
    defined = {section: set((config.get(section) or {}).keys()) for section in SECTIONS}
    for name, pipeline in (config.get("service", {}).get("pipelines") or {}).items():
        if name.partition("/")[0] not in SIGNALS:
            problems.append(f"pipeline {name}: not a traces, metrics or logs pipeline")
        for section in ("receivers", "processors", "exporters"):
            if not pipeline.get(section):
                problems.append(f"pipeline {name}: no {section[:-1]}")
            for component in pipeline.get(section) or []:
                # A connector is the exporter of one pipeline and the receiver of another.
                owner = (
                    "connectors"
                    if section != "processors" and component in defined["connectors"]
                    else section
                )
                used[owner].add(component)
                if component not in defined[owner]:
                    problems.append(f"pipeline {name}: {section[:-1]} {component} is not defined")
        kinds = [component.partition("/")[0] for component in pipeline.get("processors") or []]
        if kinds[:1] != ["memory_limiter"]:
            problems.append(f"pipeline {name}: memory_limiter is not the first processor")
        if "batch" not in kinds:
            problems.append(f"pipeline {name}: no batch processor")
    return problems


def _unused_problems(config: dict[str, Any], used: dict[str, set[str]]) -> list[str]:
    problems = [
        f"{section[:-1]} {component} is defined but no pipeline uses it"
        for section in SECTIONS
        for component in sorted(set((config.get(section) or {}).keys()) - used[section])
    ]
    extensions = set((config.get("extensions") or {}).keys())
    listed = set(config.get("service", {}).get("extensions") or [])
    problems += [
        f"extension {e} is defined but not in service.extensions" for e in sorted(extensions - listed)
    ]
    problems += [
        f"extension {e} is in service.extensions but not defined" for e in sorted(listed - extensions)
    ]
    return problems


def _endpoint_problems(config: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    problems = []
    services = compose.get("services", {})
    for name, exporter in (config.get("exporters") or {}).items():
        if "endpoint" not in (exporter or {}):
            continue
        host, port, _ = _exporter_target(exporter)
        if host not in services:
            problems.append(f"exporter {name}: {host} is not a compose service")
        elif port not in listening_ports(compose, host):
            problems.append(f"exporter {name}: {host} does not listen on {port}")
    return problems


def _signal_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    exporters = config.get("exporters") or {}
    pipelines = config.get("service", {}).get("pipelines") or {}
    for signal, (backend, path) in BACKENDS.items():
        targets = {
            _exporter_target(exporters[exporter])[::2]
            for name, pipeline in pipelines.items()
            if name.partition("/")[0] == signal
            for exporter in pipeline.get("exporters") or []
            if "endpoint" in (exporters.get(exporter) or {})
        }
        if (backend, path) not in targets:
            problems.append(f"no {signal} pipeline exports to {backend}{path}")
    return problems


def wiring_problems(config: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    """Everything wrong with a collector config's wiring, one line each; empty when it is sound."""
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    problems = _pipeline_problems(config, used)
    problems += _unused_problems(config, used)
    problems += _endpoint_problems(config, compose)
    problems += _signal_problems(config)
    return problems


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return collector_config()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_config()


def test_the_collector_config_is_wired_soundly(config: dict[str, Any], compose: dict[str, Any]) -> None:
    assert wiring_problems(config, compose) == []


def test_one_pipeline_per_signal_each_with_memory_limiter_first_and_batch(config: dict[str, Any]) -> None:
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == set(SIGNALS)
    for name, pipeline in pipelines.items():
        assert pipeline["receivers"] == ["otlp"], name
        assert pipeline["processors"] == ["memory_limiter", "batch"], name
    assert pipelines["traces"]["exporters"] == ["otlp/tempo"]
    assert pipelines["metrics"]["exporters"] == ["prometheusremotewrite"]
    assert pipelines["logs"]["exporters"] == ["otlphttp/loki"]


def test_the_exporters_reach_each_backend_where_it_receives(
    config: dict[str, Any], compose: dict[str, Any]
) -> None:
    tempo = load_yaml(TEMPO_CONFIG)
    tempo_grpc = _port(tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    assert _exporter_target(config["exporters"]["otlp/tempo"]) == ("tempo", tempo_grpc, "")
    assert config["exporters"]["otlp/tempo"]["tls"] == {"insecure": True}
    loki_port = load_yaml(LOKI_CONFIG)["server"]["http_listen_port"]
    assert _exporter_target(config["exporters"]["otlphttp/loki"]) == ("loki", loki_port, "/otlp")
    assert _exporter_target(config["exporters"]["prometheusremotewrite"]) == (
        "prometheus",
        9090,
        "/api/v1/write",
    )
    assert "--web.enable-remote-write-receiver" in compose["services"]["prometheus"]["command"]
    # Loki's OTLP endpoint keeps resource and log attributes as structured metadata.
    assert load_yaml(LOKI_CONFIG)["limits_config"]["allow_structured_metadata"] is True


def test_the_receivers_listen_on_every_interface_on_the_otlp_ports(config: dict[str, Any]) -> None:
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"


def test_the_compose_service_runs_this_file_as_the_one_otlp_endpoint(
    config: dict[str, Any], compose: dict[str, Any]
) -> None:
    services = compose["services"]
    collector = services["otel-collector"]
    target = bind_mount(collector, "observability/otel-collector.yaml")
    assert collector["command"] == [f"--config={target}"]
    assert collector["image"].startswith("otel/opentelemetry-collector-contrib:")
    assert sorted(collector["ports"]) == ["127.0.0.1:4317:4317", "127.0.0.1:4318:4318"]
    health_port = _port(config["extensions"]["health_check"]["endpoint"])
    assert f"http://127.0.0.1:{health_port}/" in collector["healthcheck"]["test"]
    assert collector["depends_on"] == {
        "volumes-init": {"condition": "service_completed_successfully"},
        "prometheus": {"condition": "service_healthy"},
        "tempo": {"condition": "service_healthy"},
        "loki": {"condition": "service_healthy"},
    }
    # Nothing else offers OTLP: every service that exports sends to the collector.
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if key.startswith("OTEL_EXPORTER_OTLP") and key.endswith("ENDPOINT"):
                assert urlsplit(value).hostname == "otel-collector", f"{name}.{key} = {value}"
        if name != "otel-collector":
            published = {str(port).rpartition(":")[2] for port in svc.get("ports", [])}
            assert not published & {"4317", "4318"}, name


def test_the_collectors_own_metrics_are_scraped(config: dict[str, Any]) -> None:
    (reader,) = config["service"]["telemetry"]["metrics"]["readers"]
    exporter = reader["pull"]["exporter"]["prometheus"]
    assert exporter["host"] == "0.0.0.0"
    prometheus = load_yaml(OTEL_COLLECTOR_CONFIG.parent / "prometheus.yml")
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["otel-collector"]["static_configs"] == [{"targets": [f"otel-collector:{exporter['port']}"]}]


# --------------------------------------------------------------------------------------------------------
# The checker fails on broken copies
# --------------------------------------------------------------------------------------------------------
def _drop_batch(c: dict[str, Any]) -> None:
    c["service"]["pipelines"]["logs"]["processors"] = ["memory_limiter"]


def _batch_first(c: dict[str, Any]) -> None:
    c["service"]["pipelines"]["metrics"]["processors"] = ["batch", "memory_limiter"]


def _undefined_exporter(c: dict[str, Any]) -> None:
    c["service"]["pipelines"]["traces"]["exporters"].append("otlp/jaeger")


def _unused_processor(c: dict[str, Any]) -> None:
    c["processors"]["attributes/unused"] = {"actions": []}


def _unlisted_extension(c: dict[str, Any]) -> None:
    c["extensions"]["pprof"] = {}


def _undefined_extension(c: dict[str, Any]) -> None:
    c["service"]["extensions"].append("zpages")


def _unknown_host(c: dict[str, Any]) -> None:
    c["exporters"]["otlp/tempo"]["endpoint"] = "jaeger:4317"


def _wrong_port(c: dict[str, Any]) -> None:
    c["exporters"]["otlphttp/loki"]["endpoint"] = "http://loki:3101/otlp"


def _metrics_to_loki(c: dict[str, Any]) -> None:
    c["service"]["pipelines"]["metrics"]["exporters"] = ["otlphttp/loki"]
    c["service"]["pipelines"]["logs"]["exporters"] = ["otlphttp/loki", "prometheusremotewrite"]


def _no_logs_pipeline(c: dict[str, Any]) -> None:
    del c["service"]["pipelines"]["logs"]


def _wrong_remote_write_path(c: dict[str, Any]) -> None:
    c["exporters"]["prometheusremotewrite"]["endpoint"] = "http://prometheus:9090/api/v1/otlp"


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no batch": (_drop_batch, r"pipeline logs: no batch processor"),
    "batch before memory_limiter": (_batch_first, r"pipeline metrics: memory_limiter is not the first"),
    "undefined exporter": (_undefined_exporter, r"exporter otlp/jaeger is not defined"),
    "unused processor": (_unused_processor, r"processor attributes/unused is defined but no pipeline"),
    "extension not listed": (_unlisted_extension, r"extension pprof is defined but not in service"),
    "extension not defined": (_undefined_extension, r"extension zpages is in service.extensions but not"),
    "host not in compose": (_unknown_host, r"exporter otlp/tempo: jaeger is not a compose service"),
    "port not listened on": (_wrong_port, r"exporter otlphttp/loki: loki does not listen on 3101"),
    "metrics to the wrong backend": (_metrics_to_loki, r"no metrics pipeline exports to prometheus"),
    "a signal without a pipeline": (_no_logs_pipeline, r"no logs pipeline exports to loki/otlp"),
    "remote write at the wrong path": (
        _wrong_remote_write_path,
        r"no metrics pipeline exports to prometheus",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_the_checker_reports_a_broken_copy(
    breakage: str, config: dict[str, Any], compose: dict[str, Any]
) -> None:
    mutate, expected = BREAKAGES[breakage]
    broken = copy.deepcopy(config)
    mutate(broken)
    problems = wiring_problems(broken, compose)
    assert any(re.search(expected, problem) for problem in problems), problems


def test_the_checker_reports_a_backend_missing_from_compose(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    del broken["services"]["tempo"]
    assert "exporter otlp/tempo: tempo is not a compose service" in wiring_problems(
        collector_config(), broken
    )
