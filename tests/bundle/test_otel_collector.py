"""observability/otel-collector.yaml: the bundle's one OTLP endpoint, checked for its wiring.

No collector binary can run here; the checker (tests/bundle/collector.py) finds what the collector would
refuse or would silently lose, and the negative tests below break a copy of the parsed config in each of
those ways and require it to say so.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from observability.bundle import compose_config, load_yaml

from .collector import SIGNALS, collector_config, endpoint_port, exporter_target, wiring_problems
from .support import LOKI_CONFIG, OTEL_COLLECTOR_CONFIG, TEMPO_CONFIG, bind_mount


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
    tempo_grpc = endpoint_port(tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    assert exporter_target(config["exporters"]["otlp/tempo"]) == ("tempo", tempo_grpc, "")
    assert config["exporters"]["otlp/tempo"]["tls"] == {"insecure": True}
    loki_port = load_yaml(LOKI_CONFIG)["server"]["http_listen_port"]
    assert exporter_target(config["exporters"]["otlphttp/loki"]) == ("loki", loki_port, "/otlp")
    assert exporter_target(config["exporters"]["prometheusremotewrite"]) == (
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
    health_port = endpoint_port(config["extensions"]["health_check"]["endpoint"])
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
