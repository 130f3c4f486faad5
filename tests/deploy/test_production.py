"""The production overlay as `kubectl kustomize` renders it: every property the deployment promises."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from .support import (
    KUBERNETES,
    REPO,
    by_prefix,
    containers,
    env,
    find,
    one,
    pod_spec,
    rendered,
    selects,
    workloads,
)

NAMESPACE = "user-service"
SECRET = "user-service-credentials"
DOCKERFILE_UID = int(re.search(r"^USER (\d+):", (REPO / "Dockerfile").read_text(), re.MULTILINE)[1])  # type: ignore[index]
URL_WITH_PASSWORD = re.compile(r"://[^/@\s:]+:[^@\s]+@")


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return rendered("production")


@pytest.fixture(scope="module")
def api(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment", "user-service-api")


@pytest.fixture(scope="module")
def relay(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment", "user-service-relay")


@pytest.fixture(scope="module")
def job(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Job", "user-service-migrate")


@pytest.fixture(scope="module")
def settings(objects: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = by_prefix(objects, "ConfigMap", "user-service-config")["data"]
    return data


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


# --------------------------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------------------------
def test_the_api_serves_from_the_projects_image(api: dict[str, Any]) -> None:
    (container,) = containers(api)
    assert container["command"] == ["user-service", "serve"]
    repository, _, tag = container["image"].rpartition(":")
    assert repository.endswith("/user-service")
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), container["image"]
    assert {"name": "http", "containerPort": 5000, "protocol": "TCP"} in container["ports"]


def test_the_api_scales_on_cpu_from_two_replicas(objects: list[dict[str, Any]], api: dict[str, Any]) -> None:
    (hpa,) = find(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "user-service-api",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # The autoscaler owns the count: a replicas field would reset it on every apply.
    assert "replicas" not in api["spec"]


def test_disruptions_take_one_api_pod_at_a_time(objects: list[dict[str, Any]], api: dict[str, Any]) -> None:
    budgets = [
        p for p in find(objects, "PodDisruptionBudget") if selects(p["spec"]["selector"], _pod_labels(api))
    ]
    (budget,) = budgets
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"].get("maxUnavailable") == 1 or budget["spec"].get("minAvailable", 0) >= 1


def test_the_api_spreads_over_nodes_and_zones(api: dict[str, Any]) -> None:
    constraints = {c["topologyKey"]: c for c in pod_spec(api)["topologySpreadConstraints"]}
    assert set(constraints) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in constraints.values():
        assert constraint["maxSkew"] == 1
        assert selects(constraint["labelSelector"], _pod_labels(api))
    assert constraints["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"


def test_the_api_probes_its_health_endpoints(api: dict[str, Any]) -> None:
    (container,) = containers(api)
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthcheck/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthcheck", "port": "http"}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthcheck", "port": "http"}
    assert (
        startup["periodSeconds"] * startup["failureThreshold"] >= 30
    )  # time to start before liveness counts


def test_every_container_has_requests_and_limits(objects: list[dict[str, Any]]) -> None:
    checked = 0
    for workload in workloads(objects):
        for container in containers(workload):
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[part]), f"{workload['metadata']['name']} {part}"
            checked += 1
    assert checked == 3


def test_every_container_runs_locked_down(objects: list[dict[str, Any]]) -> None:
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        pod = pod_spec(workload)["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == DOCKERFILE_UID, name  # the image's user (Dockerfile USER)
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in containers(workload):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert not context.get("privileged"), name


def test_the_pod_leaves_the_endpoints_before_sigterm_and_gets_time_to_finish(
    api: dict[str, Any], settings: dict[str, str]
) -> None:
    (container,) = containers(api)
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause >= 3
    shutdown = float(settings["SHUTDOWN_TIMEOUT"])
    assert pod_spec(api)["terminationGracePeriodSeconds"] > shutdown + pause


def test_workers_follow_the_cpu_limit(api: dict[str, Any]) -> None:
    (container,) = containers(api)
    variables = env(container)
    assert variables["WEB_CONCURRENCY"]["valueFrom"] == {
        "resourceFieldRef": {"containerName": container["name"], "resource": "limits.cpu", "divisor": "1"}
    }
    assert "WORKERS" not in variables  # WORKERS set would win over WEB_CONCURRENCY
    # The multiprocess metrics folder needs a writable place on the read-only root filesystem.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(api)["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    multiproc = variables.get("PROMETHEUS_MULTIPROC_DIR", {}).get("value")
    if multiproc is not None:
        assert any(multiproc.startswith(path) for path in mounts), multiproc


# --------------------------------------------------------------------------------------------------------
# The relay and the migrations
# --------------------------------------------------------------------------------------------------------
def test_the_relay_runs_alone_in_two_replicas_on_a_direct_session(relay: dict[str, Any]) -> None:
    (container,) = containers(relay)
    assert container["command"] == ["user-service", "relay"]
    assert relay["spec"]["replicas"] == 2
    variables = env(container)
    for name, key in (
        ("RELAY_DATABASE_URL", "database-direct-url"),
        ("BROKER_URL", "broker-url"),
        ("DATABASE_URL", "database-url"),
    ):
        assert variables[name]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": key}, name


def test_the_relay_serves_its_metrics_and_is_probed_on_them(
    relay: dict[str, Any], settings: dict[str, str]
) -> None:
    (container,) = containers(relay)
    assert settings["RELAY_METRICS_PORT"] == "9464"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9464}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthcheck", "port": "metrics"}, probe
    assert not any("CKV_K8S_8" in v or "CKV_K8S_9" in v for v in relay["metadata"]["annotations"].values())


def test_the_api_runs_no_relay(api: dict[str, Any], settings: dict[str, str]) -> None:
    """The service starts a relay in-process when BROKER_URL is set: the API gets none."""
    (container,) = containers(api)
    assert "BROKER_URL" not in env(container)
    assert "BROKER_URL" not in settings
    assert "RELAY_DATABASE_URL" not in env(container)


def test_the_api_reads_through_the_pooler_and_the_replica(
    api: dict[str, Any], settings: dict[str, str]
) -> None:
    (container,) = containers(api)
    variables = env(container)
    assert variables["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": "database-url"}
    assert variables["DATABASE_READ_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": SECRET,
        "key": "database-read-url",
        "optional": True,
    }
    assert settings["DB_STATEMENT_CACHE_SIZE"] == "0"  # PgBouncer in transaction mode


def test_the_migrations_run_as_a_job_on_the_direct_connection(job: dict[str, Any]) -> None:
    (container,) = containers(job)
    assert container["command"] == ["user-service", "migrate"]
    assert env(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": SECRET,
        "key": "database-direct-url",
    }
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["activeDeadlineSeconds"] > 0


# --------------------------------------------------------------------------------------------------------
# Service, account, settings and secrets
# --------------------------------------------------------------------------------------------------------
def test_the_service_routes_to_the_api_port(objects: list[dict[str, Any]], api: dict[str, Any]) -> None:
    service = one(objects, "Service", "user-service")
    assert selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(api))
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["targetPort"]) == ("http", "http")
    for workload in (w for w in workloads(objects) if w is not api):
        assert not selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(workload))


def test_no_pod_gets_a_service_account_token(objects: list[dict[str, Any]]) -> None:
    (account,) = find(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    for workload in workloads(objects):
        assert pod_spec(workload)["serviceAccountName"] == account["metadata"]["name"]
        assert pod_spec(workload)["automountServiceAccountToken"] is False


def test_settings_come_from_the_configmap(objects: list[dict[str, Any]], settings: dict[str, str]) -> None:
    config_name = by_prefix(objects, "ConfigMap", "user-service-config")["metadata"]["name"]
    for workload in workloads(objects):
        for container in containers(workload):
            assert container["envFrom"] == [{"configMapRef": {"name": config_name}}]
    assert settings["ENVIRONMENT"] == "production"
    assert settings["LOG_FORMAT"] == "json"
    assert settings["OTEL_SERVICE_NAME"] == "user-service"
    assert settings["HOST"] == "0.0.0.0"
    assert settings["PORT"] == "5000"
    collector = urlsplit(settings["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (collector.scheme, collector.port) == ("http", 4318)
    assert collector.hostname is not None
    assert collector.hostname.startswith("otel-collector.")


def test_credentials_come_only_from_secrets(objects: list[dict[str, Any]]) -> None:
    """No URL with a password, nor any secret-looking setting, as a plain value anywhere."""
    secret_name = re.compile(r"URL|PASSWORD|PASS|SECRET|TOKEN|KEY")
    checked = 0
    for workload in workloads(objects):
        for container in containers(workload):
            for name, entry in env(container).items():
                assert not URL_WITH_PASSWORD.search(str(entry.get("value", ""))), name
                if secret_name.search(name) and name != "OTEL_EXPORTER_OTLP_ENDPOINT":
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == SECRET, name
                    checked += 1
    assert checked == 6  # the API's two database URLs, the relay's three URLs, the migrations' one
    for config_map in find(objects, "ConfigMap"):
        for key, value in config_map.get("data", {}).items():
            assert not URL_WITH_PASSWORD.search(value), f"{config_map['metadata']['name']}: {key}"
    assert not find(objects, "Secret")  # the production Secret is made outside the tree


# --------------------------------------------------------------------------------------------------------
# Network policies
# --------------------------------------------------------------------------------------------------------
def _policies(objects: list[dict[str, Any]], labels: dict[str, str], kind: str) -> list[dict[str, Any]]:
    return [
        p
        for p in find(objects, "NetworkPolicy")
        if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels)
    ]


def test_every_pod_is_denied_by_default(objects: list[dict[str, Any]]) -> None:
    deny = [p for p in find(objects, "NetworkPolicy") if p["spec"]["podSelector"] == {}]
    assert [p["spec"] for p in deny] == [{"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}]


def test_ingress_reaches_only_the_api_port_and_the_relays_metrics(
    objects: list[dict[str, Any]], api: dict[str, Any], relay: dict[str, Any]
) -> None:
    policies = [p for p in find(objects, "NetworkPolicy") if p["spec"].get("ingress")]
    reached = {
        workload["metadata"]["name"]: [
            rule
            for p in policies
            if selects(p["spec"]["podSelector"], _pod_labels(workload))
            for rule in p["spec"]["ingress"]
        ]
        for workload in (api, relay)
    }
    assert reached == {
        "user-service-api": [{"ports": [{"protocol": "TCP", "port": 5000}]}],
        "user-service-relay": [{"ports": [{"protocol": "TCP", "port": 9464}]}],
    }
    assert sum(len(p["spec"]["ingress"]) for p in policies) == 2  # and nothing else
    (container,) = containers(api)
    assert [p["containerPort"] for p in container["ports"]] == [5000]
    (container,) = containers(relay)
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("metrics", 9464)]


ALLOWED_EGRESS = {
    "postgresql": {5432, 6432},
    "rabbitmq": {5671, 5672},
    "collector": {4317, 4318},
    "dns": {53},
}


def _egress_ports(objects: list[dict[str, Any]], workload: dict[str, Any]) -> set[int]:
    ports = set()
    for policy in _policies(objects, _pod_labels(workload), "Egress"):
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), f"{policy['metadata']['name']}: egress to anywhere"
            assert rule.get("ports"), f"{policy['metadata']['name']}: egress on any port"
            ports |= {p["port"] for p in rule["ports"]}
    return ports


def test_egress_goes_only_to_the_database_the_broker_the_collector_and_dns(
    objects: list[dict[str, Any]], api: dict[str, Any], relay: dict[str, Any], job: dict[str, Any]
) -> None:
    allowed = set().union(*ALLOWED_EGRESS.values())
    for workload in (api, relay, job):
        assert _egress_ports(objects, workload) <= allowed, workload["metadata"]["name"]
    assert _egress_ports(objects, relay) == allowed
    # Only the relay talks to RabbitMQ.
    assert not _egress_ports(objects, api) & ALLOWED_EGRESS["rabbitmq"]
    assert _egress_ports(objects, api) == allowed - ALLOWED_EGRESS["rabbitmq"]
    dns = [
        rule
        for policy in _policies(objects, _pod_labels(api), "Egress")
        for rule in policy["spec"].get("egress", [])
        if {p["port"] for p in rule["ports"]} == {53}
    ]
    (rule,) = dns
    assert {p["protocol"] for p in rule["ports"]} == {"UDP", "TCP"}
    assert rule["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


# --------------------------------------------------------------------------------------------------------
# Prometheus Operator objects and dashboards
# --------------------------------------------------------------------------------------------------------
def test_prometheus_scrapes_the_relay_pods_as_their_own_job(
    objects: list[dict[str, Any]], relay: dict[str, Any]
) -> None:
    (monitor,) = find(objects, "PodMonitor")
    assert selects(monitor["spec"]["selector"], _pod_labels(relay))
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert endpoint["relabelings"] == [
        {"action": "replace", "targetLabel": "job", "replacement": "user-service-relay"}
    ]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # The relay's alert reads the relay's job; the API's `up` alerts do not count the relay pods.
    rules_text = "".join(p.read_text() for p in sorted((REPO / "observability" / "rules").glob("*.yml")))
    assert "user-service-relay" in rules_text


def test_prometheus_scrapes_the_api_as_job_user_service(objects: list[dict[str, Any]]) -> None:
    (monitor,) = find(objects, "ServiceMonitor")
    service = one(objects, "Service", "user-service")
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # The operator names the job after the Service; the rules and dashboards select job="user-service".
    assert "jobLabel" not in monitor["spec"]
    rules_text = "".join(p.read_text() for p in sorted((REPO / "observability" / "rules").glob("*.yml")))
    assert service["metadata"]["name"] in set(re.findall(r'job="([^"]+)"', rules_text))
    rule = one(objects, "PrometheusRule", "user-service")
    assert monitor["metadata"]["labels"]["release"] == rule["metadata"]["labels"]["release"]


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("prometheusrule", KUBERNETES / "prometheusrule.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prometheus_rule_is_the_rules_folder(objects: list[dict[str, Any]]) -> None:
    rule = one(objects, "PrometheusRule", "user-service")
    groups = [
        group
        for path in sorted((REPO / "observability" / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    ]
    assert rule["spec"]["groups"] == groups
    assert len(groups) >= 2


def test_the_generated_prometheus_rule_is_up_to_date() -> None:
    generator = _generator()
    assert Path(generator.OUTPUT).read_text(encoding="utf-8") == generator.render(), (
        "run: uv run python deploy/kubernetes/prometheusrule.py"
    )


def test_the_dashboards_are_the_dashboards_folder(objects: list[dict[str, Any]]) -> None:
    sources = {
        p.name: p.read_text(encoding="utf-8") for p in (REPO / "grafana" / "dashboards").glob("*.json")
    }
    maps = [c for c in find(objects, "ConfigMap") if c["metadata"].get("labels", {}).get("grafana_dashboard")]
    shipped = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, value),) = config_map["data"].items()  # one dashboard per ConfigMap, each under 1 MiB
        shipped[key] = value
    assert set(shipped) == set(sources)
    for name, text in sources.items():
        assert shipped[name] == text, name
        assert json.loads(shipped[name])["uid"] == json.loads(text)["uid"]
    assert len(sources) == 5


def test_everything_lives_in_the_restricted_namespace(objects: list[dict[str, Any]]) -> None:
    (namespace,) = find(objects, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
