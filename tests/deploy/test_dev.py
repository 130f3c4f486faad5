"""The dev overlay: a whole cluster (PostgreSQL, RabbitMQ, PgBouncer, the collector) for kind or minikube."""

from __future__ import annotations

import base64
import configparser
import copy
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from observability.bundle import compose_config
from tests.bundle.collector import SECTIONS, SIGNALS, pipeline_problems
from tests.bundle.support import OTEL_COLLECTOR_CONFIG

from .support import KUBERNETES, by_prefix, containers, env, find, one, pod_spec, rendered, workloads

NAMESPACE = "user-service-dev"
DEV = KUBERNETES / "overlays" / "dev"


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return rendered("dev")


def _secret(objects: list[dict[str, Any]], prefix: str) -> dict[str, str]:
    data = by_prefix(objects, "Secret", prefix)["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def _url(objects: list[dict[str, Any]], container: dict[str, Any], name: str) -> str:
    ref = env(container)[name]["valueFrom"]["secretKeyRef"]
    secret = one(objects, "Secret", ref["name"])
    return base64.b64decode(secret["data"][ref["key"]]).decode()


def _service_port(objects: list[dict[str, Any]], host: str) -> set[int]:
    return {port["port"] for port in one(objects, "Service", host)["spec"]["ports"]}


def test_the_backends_are_statefulsets_with_volumes(objects: list[dict[str, Any]]) -> None:
    images = {name: svc["image"] for name, svc in compose_config()["services"].items() if "image" in svc}
    for name, data_path in (("postgres", "/var/lib/postgresql/data"), ("rabbitmq", "/var/lib/rabbitmq")):
        statefulset = one(objects, "StatefulSet", name)
        (claim,) = statefulset["spec"]["volumeClaimTemplates"]
        (container,) = containers(statefulset)
        assert {"name": claim["metadata"]["name"], "mountPath": data_path} in [
            {k: m[k] for k in ("name", "mountPath")} for m in container["volumeMounts"]
        ], name
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert container["image"] == images[name]  # the compose bundle's version
        assert container["readinessProbe"], name
        assert container["livenessProbe"], name
        assert statefulset["spec"]["serviceName"] == name
        one(objects, "Service", name)


def test_the_api_goes_through_pgbouncer_in_transaction_mode(objects: list[dict[str, Any]]) -> None:
    ini = configparser.ConfigParser()
    ini.read_string(by_prefix(objects, "ConfigMap", "pgbouncer-config")["data"]["pgbouncer.ini"])
    assert ini["pgbouncer"]["pool_mode"] == "transaction"
    listen_port = int(ini["pgbouncer"]["listen_port"])
    (api,) = containers(one(objects, "Deployment", "user-service-api"))
    url = urlsplit(_url(objects, api, "DATABASE_URL"))
    assert (url.hostname, url.port) == ("pgbouncer", listen_port)
    assert listen_port in _service_port(objects, "pgbouncer")
    database = url.path.lstrip("/")
    target = dict(part.split("=") for part in ini["databases"][database].split())
    assert (target["host"], int(target["port"]), target["dbname"]) == ("postgres", 5432, database)
    settings = by_prefix(objects, "ConfigMap", "user-service-config")["data"]
    assert settings["DB_STATEMENT_CACHE_SIZE"] == "0"  # no prepared statements through the pooler


def test_the_relay_and_the_migrations_go_to_postgresql_directly(objects: list[dict[str, Any]]) -> None:
    (relay,) = containers(one(objects, "Deployment", "user-service-relay"))
    (migrate,) = containers(one(objects, "Job", "user-service-migrate"))
    for container, name in ((relay, "RELAY_DATABASE_URL"), (migrate, "DATABASE_URL")):
        url = urlsplit(_url(objects, container, name))
        assert (url.hostname, url.port) == ("postgres", 5432), name
        assert url.port in _service_port(objects, "postgres")
    broker = urlsplit(_url(objects, relay, "BROKER_URL"))
    assert (broker.scheme, broker.hostname, broker.port) == ("amqp", "rabbitmq", 5672)


def test_the_backends_passwords_match_the_services_urls(objects: list[dict[str, Any]]) -> None:
    (relay,) = containers(one(objects, "Deployment", "user-service-relay"))
    postgres_password = _secret(objects, "postgres-credentials")["password"]
    assert urlsplit(_url(objects, relay, "RELAY_DATABASE_URL")).password == postgres_password
    userlist = _secret(objects, "pgbouncer-auth")["userlist.txt"].split()
    assert userlist == ['"user_service"', f'"{postgres_password}"']
    rabbit = dict(
        line.split(" = ")
        for line in _secret(objects, "rabbitmq-credentials")["20-credentials.conf"].splitlines()
    )
    broker = urlsplit(_url(objects, relay, "BROKER_URL"))
    assert (rabbit["default_user"], rabbit["default_pass"]) == (broker.username, broker.password)


def test_the_migrations_job_is_included(objects: list[dict[str, Any]]) -> None:
    (container,) = containers(one(objects, "Job", "user-service-migrate"))
    assert container["command"] == ["user-service", "migrate"]


def test_the_service_image_is_the_locally_built_one(objects: list[dict[str, Any]]) -> None:
    for workload in workloads(objects):
        for container in containers(workload):
            if container["image"].startswith("user-service"):
                assert container["image"] == "user-service:local"  # as docker-compose.yml builds it
                assert container["imagePullPolicy"] == "IfNotPresent"


def test_every_pod_meets_the_restricted_standard(objects: list[dict[str, Any]]) -> None:
    (namespace,) = find(objects, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in workloads(objects):
        pod = pod_spec(workload)["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert "requests" in container["resources"]
            assert "limits" in container["resources"]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


# --------------------------------------------------------------------------------------------------------
# The collector: the compose bundle's configuration file, and this cluster's exporters
# --------------------------------------------------------------------------------------------------------
def merge(base: Any, override: Any) -> Any:
    """Two collector config files as the collector merges them: maps key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return copy.deepcopy(override)


@pytest.fixture(scope="module")
def collector(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    return one(objects, "Deployment", "otel-collector"), by_prefix(
        objects, "ConfigMap", "otel-collector-config"
    )["data"]


def test_the_collector_reads_the_compose_bundles_file_byte_for_byte(
    collector: tuple[dict[str, Any], dict[str, str]],
) -> None:
    deployment, data = collector
    assert data["otel-collector.yaml"] == OTEL_COLLECTOR_CONFIG.read_text(encoding="utf-8")
    assert data["otel-collector-dev.yaml"] == (DEV / "otel-collector-dev.yaml").read_text(encoding="utf-8")
    (container,) = containers(deployment)
    (mount,) = container["volumeMounts"]
    volume = {v["name"]: v for v in pod_spec(deployment)["volumes"]}[mount["name"]]
    assert volume["configMap"]["name"].startswith("otel-collector-config-")
    # The bundle's file first, so the dev file's exporters win.
    assert container["args"] == [
        f"--config={mount['mountPath']}/otel-collector.yaml",
        f"--config={mount['mountPath']}/otel-collector-dev.yaml",
    ]
    assert container["image"] == compose_config()["services"]["otel-collector"]["image"]


def test_the_dev_file_changes_the_exporters_and_nothing_else(
    collector: tuple[dict[str, Any], dict[str, str]],
) -> None:
    _, data = collector
    bundle = yaml.safe_load(data["otel-collector.yaml"])
    dev = yaml.safe_load(data["otel-collector-dev.yaml"])
    merged = merge(bundle, dev)
    assert pipeline_problems(merged, {section: set() for section in SECTIONS}) == []
    for signal in SIGNALS:
        assert merged["service"]["pipelines"][signal]["exporters"] == ["debug"]
    # Take the exporters away from both: what is left is the bundle's configuration unchanged.
    for config in (bundle, merged):
        config.pop("exporters")
        for pipeline in config["service"]["pipelines"].values():
            pipeline.pop("exporters")
    assert merged == bundle


def test_the_collector_is_probed_on_its_health_extension(
    collector: tuple[dict[str, Any], dict[str, str]], objects: list[dict[str, Any]]
) -> None:
    deployment, data = collector
    (container,) = containers(deployment)
    health = int(
        yaml.safe_load(data["otel-collector.yaml"])["extensions"]["health_check"]["endpoint"].rpartition(":")[
            2
        ]
    )
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == health
    receivers = yaml.safe_load(data["otel-collector.yaml"])["receivers"]["otlp"]["protocols"]
    assert {int(p["endpoint"].rpartition(":")[2]) for p in receivers.values()} == _service_port(
        objects, "otel-collector"
    )
    settings = by_prefix(objects, "ConfigMap", "user-service-config")["data"]
    endpoint = urlsplit(settings["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.hostname, endpoint.port) == ("otel-collector", 4318)
