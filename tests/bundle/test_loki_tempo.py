"""loki/loki.yaml and observability/tempo.yaml: storage, retention, receivers, and their wiring."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from observability.bundle import compose_config, load_yaml

from .support import LOKI_CONFIG, OTEL_COLLECTOR_CONFIG, TEMPO_CONFIG, bind_mount, service_volumes
from .vrl import loki_sinks


@pytest.fixture(scope="module")
def loki() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml(LOKI_CONFIG)
    return config


@pytest.fixture(scope="module")
def tempo() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml(TEMPO_CONFIG)
    return config


def _paths(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _paths(value) if key not in {"endpoint", "url"}]
    if isinstance(node, list):
        return [p for item in node for p in _paths(item)]
    return [node] if isinstance(node, str) and node.startswith("/") else []


def _data_mount(service: str) -> str:
    (target,) = [
        dst
        for src, dst, _ in service_volumes(compose_config()["services"][service])
        if src == f"{service}-data"
    ]
    return target


def test_loki_is_a_single_binary_without_auth(loki: dict[str, Any]) -> None:
    assert loki["auth_enabled"] is False
    assert loki["common"]["replication_factor"] == 1
    assert loki["common"]["ring"]["kvstore"]["store"] == "inmemory"
    assert loki["analytics"]["reporting_enabled"] is False


def test_loki_stores_on_the_filesystem_with_schema_v13(loki: dict[str, Any]) -> None:
    (schema,) = loki["schema_config"]["configs"]
    assert (schema["store"], schema["object_store"], schema["schema"]) == ("tsdb", "filesystem", "v13")
    assert schema["index"]["period"] == "24h"
    assert "filesystem" in loki["common"]["storage"]


def test_loki_keeps_structured_metadata_and_applies_retention(loki: dict[str, Any]) -> None:
    limits = loki["limits_config"]
    assert limits["allow_structured_metadata"] is True
    assert limits["retention_period"].endswith("h")
    assert int(limits["retention_period"][:-1]) >= 24
    compactor = loki["compactor"]
    assert compactor["retention_enabled"] is True
    assert compactor["delete_request_store"] == "filesystem"  # required by Loki 3 with retention


def test_loki_writes_only_inside_its_volume(loki: dict[str, Any]) -> None:
    mount = _data_mount("loki")
    paths = _paths(loki)
    assert paths
    for path in paths:
        assert path == mount or path.startswith(mount + "/"), path


def test_loki_is_reached_where_it_listens(loki: dict[str, Any]) -> None:
    port = loki["server"]["http_listen_port"]
    for sink in loki_sinks().values():
        assert sink["endpoint"] == f"http://loki:{port}"
    loki_service = compose_config()["services"]["loki"]
    assert f"127.0.0.1:{port}:{port}" in loki_service["ports"]
    assert bind_mount(loki_service, "loki/loki.yaml") == "/etc/loki/loki.yaml"
    assert loki_service["command"] == ["-config.file=/etc/loki/loki.yaml"]


def test_tempo_receives_otlp_on_every_interface(tempo: dict[str, Any]) -> None:
    protocols = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"


def test_tempo_takes_otlp_from_the_collector_only(tempo: dict[str, Any]) -> None:
    """The collector is the bundle's OTLP endpoint: the service sends to it, Tempo's OTLP ports stay
    inside the compose network."""
    services = compose_config()["services"]
    endpoint = urlsplit(services["api"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", "otel-collector", 4318)
    published = {str(port).rpartition(":")[2] for port in services["tempo"]["ports"]}
    assert published == {str(tempo["server"]["http_listen_port"])}
    grpc_port = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rpartition(":")[2]
    collector = load_yaml(OTEL_COLLECTOR_CONFIG)
    assert collector["exporters"]["otlp/tempo"]["endpoint"] == f"tempo:{grpc_port}"


def test_tempo_keeps_recent_spans_for_traceql_metrics(tempo: dict[str, Any]) -> None:
    """TraceQL metrics (and Grafana's Traces Drilldown) need the local-blocks processor."""
    processors = tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert set(processors) == {"service-graphs", "span-metrics", "local-blocks"}
    local_blocks = tempo["metrics_generator"]["processor"]["local_blocks"]
    assert local_blocks["filter_server_spans"] is False
    assert local_blocks["flush_to_storage"] is True
    assert tempo["metrics_generator"]["traces_storage"]["path"].startswith(_data_mount("tempo") + "/")


def test_loki_takes_service_name_from_the_streams_never_from_service(loki: dict[str, Any]) -> None:
    """By default Loki would make service_name from the `service` label (`api`); Vector sends it."""
    assert loki["limits_config"]["discover_service_name"] == []
    for sink in loki_sinks().values():
        assert sink["labels"]["service_name"] == "{{ service_name }}"


def test_tempo_writes_span_metrics_with_exemplars_to_prometheus(tempo: dict[str, Any]) -> None:
    generator = tempo["metrics_generator"]
    (remote,) = generator["storage"]["remote_write"]
    url = urlsplit(remote["url"])
    assert (url.hostname, url.port, url.path) == ("prometheus", 9090, "/api/v1/write")
    assert remote["send_exemplars"] is True
    processors = tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert {"service-graphs", "span-metrics"} <= set(processors)
    dimensions = generator["processor"]["span_metrics"]["dimensions"]
    assert {"db.system.name", "db.operation.name", "http.route"} <= set(dimensions)
    assert not {"db.system", "db.name", "net.peer.name"} & set(dimensions)  # the deprecated names
    assert not {"db.statement", "db.query.text", "url.full", "http.target"} & set(dimensions)
    command = compose_config()["services"]["prometheus"]["command"]
    assert "--web.enable-remote-write-receiver" in command
    assert "--enable-feature=exemplar-storage" in command


def test_tempo_stores_locally_inside_its_volume(tempo: dict[str, Any]) -> None:
    assert tempo["storage"]["trace"]["backend"] == "local"
    mount = _data_mount("tempo")
    for path in _paths(tempo):
        assert path.startswith(mount + "/"), path


def test_tempo_is_reached_where_it_listens(tempo: dict[str, Any]) -> None:
    port = tempo["server"]["http_listen_port"]
    service = compose_config()["services"]["tempo"]
    assert f"127.0.0.1:{port}:{port}" in service["ports"]
    assert bind_mount(service, "observability/tempo.yaml") == "/etc/tempo/tempo.yaml"
    assert service["command"] == ["-config.file=/etc/tempo/tempo.yaml"]
