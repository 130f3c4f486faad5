"""docker-compose.yml: the services, their wiring, and the Compose validator's verdict."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest

from observability.bundle import COMPOSE_FILE, REPO, compose_config, compose_raw
from tests.support.required import require_tool

from .support import (
    COMPOSE_SPEC_SCHEMA,
    ENV_EXAMPLE,
    ONE_SHOT_SERVICES,
    RABBITMQ_PLUGINS,
    compose_defaults,
    env_example,
    service_volumes,
)

PLATFORM = {
    "api",
    "migrate",
    "postgres",
    "rabbitmq",
    "otel-collector",
    "prometheus",
    "tempo",
    "loki",
    "vector",
    "grafana",
}
LOADTEST = {"locust"}
SUPPORT = {"volumes-init"}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose_config()["services"]
    return result


def test_the_services_are_the_platform_the_load_generator_and_one_helper(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) == PLATFORM | LOADTEST | SUPPORT


def test_only_the_load_generator_sits_behind_a_profile(services: dict[str, dict[str, Any]]) -> None:
    profiled = {name: svc["profiles"] for name, svc in services.items() if "profiles" in svc}
    assert profiled == {"locust": ["loadtest"]}


def test_locust_runs_the_repository_locustfile_against_the_api(services: dict[str, dict[str, Any]]) -> None:
    locust = services["locust"]
    assert [*locust["entrypoint"], *locust["command"]] == [
        "locust",
        "-f",
        "/mnt/loadtest/locustfile.py",
        "--host",
        "http://api:5000",
    ]
    assert ("./loadtest", "/mnt/loadtest", True) in service_volumes(locust)
    assert (REPO / "loadtest" / "locustfile.py").is_file()
    assert locust["image"].startswith("locustio/locust:")


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        check = svc.get("healthcheck", {})
        if name in ONE_SHOT_SERVICES:
            assert svc.get("restart") == "no", name
            continue
        assert not check.get("disable"), name
        test = check.get("test")
        assert isinstance(test, list), name
        assert test[0] in ("CMD", "CMD-SHELL"), name
        assert len(test) > 1, name
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in check, f"{name}: healthcheck without {key}"
        assert svc.get("restart") == "unless-stopped", name


def test_healthchecks_probe_their_own_service(services: dict[str, dict[str, Any]]) -> None:
    """Each HTTP probe asks the port the service listens on (its published container port)."""
    expected = {
        "api": "http://127.0.0.1:5000/healthcheck",
        "prometheus": "http://127.0.0.1:9090/-/ready",
        "tempo": "http://127.0.0.1:3200/ready",
        "loki": "http://127.0.0.1:3100/ready",
        "vector": "http://127.0.0.1:9598/metrics",
        "otel-collector": "http://127.0.0.1:13133/",
        "grafana": "http://127.0.0.1:3000/api/health",
        "locust": "http://127.0.0.1:8089/",
    }
    for name, url in expected.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        assert url in test, f"{name}: {test}"


def test_images_without_a_shell_probe_with_the_shared_static_busybox(
    services: dict[str, dict[str, Any]],
) -> None:
    init = services["volumes-init"]
    assert ("probe-tools", "/probe", False) in service_volumes(init)
    assert "/probe/busybox" in " ".join(init["command"])
    for name, svc in services.items():
        test = svc.get("healthcheck", {}).get("test", [])
        if "/probe/busybox" in test:
            assert ("probe-tools", "/probe", True) in service_volumes(svc), name
            assert svc["depends_on"]["volumes-init"] == {"condition": "service_completed_successfully"}, name


def test_every_dependency_waits_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        depends = svc.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs the long form with a condition"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            wanted = "service_completed_successfully" if target in ONE_SHOT_SERVICES else "service_healthy"
            assert spec == {"condition": wanted}, f"{name} -> {target}: {spec}"


def test_the_api_starts_after_the_migrations_and_its_backends(services: dict[str, dict[str, Any]]) -> None:
    assert services["api"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "postgres": {"condition": "service_healthy"},
        "rabbitmq": {"condition": "service_healthy"},
        "otel-collector": {"condition": "service_healthy"},
    }
    assert services["migrate"]["command"] == ["user-service", "migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["healthcheck"] == {"disable": True}


_EXACT_TAG = re.compile(r"^v?\d+\.\d+(\.\d+)?([-.][A-Za-z0-9.]+)*$")


def test_every_image_is_pinned_to_an_exact_version(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc["image"]
        if "build" in svc:
            assert image == "user-service:local", name
            continue
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert "/" not in tag, f"{name}: {image} has no tag"
        assert _EXACT_TAG.match(tag), f"{name}: {image} is not pinned to an exact version"
        assert "latest" not in tag, name


def test_pinned_versions_are_the_ones_the_bundle_was_written_for(services: dict[str, dict[str, Any]]) -> None:
    """Config keys depend on these: Postgres 17, Loki 3.x with tsdb v13, Tempo 2.x overrides, Vector < 0.57
    (template confinement), Prometheus 3 (its config must also pass promtool 2.42)."""
    tags = {name: svc["image"].rpartition(":")[2] for name, svc in services.items() if "build" not in svc}
    assert tags["postgres"].startswith("17.")
    assert tags["rabbitmq"].endswith("-management")
    assert tags["loki"].startswith("3.")
    assert tags["tempo"].startswith("2.")
    assert tags["prometheus"].startswith("v3.")
    assert tags["otel-collector"].startswith("0.")
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    major, minor = (int(part) for part in tags["vector"].split(".")[:2])
    assert (major, minor) < (0, 57)


def test_every_published_port_is_bound_to_loopback(services: dict[str, dict[str, Any]]) -> None:
    published = 0
    for name, svc in services.items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+", str(port)), f"{name}: {port}"
            published += 1
    assert published >= 8
    for name, svc in services.items():
        assert svc.get("network_mode") != "host", name


def test_data_lives_in_named_volumes() -> None:
    config = compose_config()
    declared = set(config["volumes"])
    expected = {
        "postgres": "/var/lib/postgresql/data",
        "rabbitmq": "/var/lib/rabbitmq",
        "prometheus": "/prometheus",
        "tempo": "/var/tempo",
        "loki": "/loki",
        "grafana": "/var/lib/grafana",
        "vector": "/var/lib/vector",
    }
    for name, target in expected.items():
        sources = [src for src, dst, _ in service_volumes(config["services"][name]) if dst == target]
        assert sources, f"{name}: nothing mounted on {target}"
        assert sources[0] in declared, f"{name}: {target} is not on a named volume"
    used = {
        src for svc in config["services"].values() for src, _, _ in service_volumes(svc) if "/" not in src
    }
    assert used == declared


def test_bind_mounts_are_read_only_repository_files(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for source, _, read_only in service_volumes(svc):
            if not source.startswith(("./", "/")):
                continue
            assert read_only, f"{name}: {source} is mounted writable"
            if source.startswith("./"):
                if source == "./grafana/dashboards":
                    continue  # filled by the dashboards' own change; Docker creates it when missing
                assert (REPO / source).exists(), f"{name}: {source} is not in the repository"
            else:
                assert (name, source) == ("vector", "/var/run/docker.sock"), f"{name}: host path {source}"


def test_the_service_gets_its_settings_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    api, migrate = services["api"], services["migrate"]
    assert api["environment"] == migrate["environment"]
    env = api["environment"]
    assert env["HOST"] == "0.0.0.0"
    assert env["PORT"] == "5000"
    assert env["LOG_FORMAT"] == "json"
    assert env["LOG_LEVEL"] == "info"
    assert env["ENVIRONMENT"] == "local"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert env["OTEL_SERVICE_NAME"] == "user-service"

    pg = services["postgres"]["environment"]
    db = urlsplit(env["DATABASE_URL"])
    assert (db.scheme, db.hostname, db.port, db.path) == (
        "postgresql",
        "postgres",
        5432,
        f"/{pg['POSTGRES_DB']}",
    )
    assert (db.username, db.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"])

    mq = services["rabbitmq"]["environment"]
    broker = urlsplit(env["BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port, broker.path) == ("amqp", "rabbitmq", 5672, "/")
    assert (broker.username, broker.password) == (mq["RABBITMQ_DEFAULT_USER"], mq["RABBITMQ_DEFAULT_PASS"])

    assert api["command"] == ["user-service", "serve", "--host", "0.0.0.0", "--port", "5000"]
    assert "127.0.0.1:5000:5000" in api["ports"]


def test_the_service_containers_carry_their_otel_service_name(services: dict[str, dict[str, Any]]) -> None:
    """Vector turns the `service.name` label into Loki's service_name: it must be OTEL_SERVICE_NAME."""
    for name in ("api", "migrate"):
        svc = services[name]
        assert svc["labels"] == {"service.name": svc["environment"]["OTEL_SERVICE_NAME"]}, name
    assert not [name for name, svc in services.items() if name not in ("api", "migrate") and "labels" in svc]


def test_the_service_runs_on_a_read_only_root_filesystem(services: dict[str, dict[str, Any]]) -> None:
    for name in ("api", "migrate"):
        svc = services[name]
        assert svc["read_only"] is True, name
        assert any(entry.split(":")[0] == "/tmp" for entry in svc["tmpfs"]), name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert svc["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name


_URL_CREDENTIALS = re.compile(r"://(?:\$\{[^}]*\}|[^:/@$]+):(?P<password>\$\{[^}]*\}|[^@]*)@")


def test_every_secret_can_be_overridden_from_env() -> None:
    raw = compose_raw()["services"]
    secret_key = re.compile(r"PASS|SECRET|TOKEN|KEY", re.IGNORECASE)
    checked = 0
    for name, svc in raw.items():
        for key, raw_value in (svc.get("environment") or {}).items():
            value = str(raw_value)
            if secret_key.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:-[^}]*\}", value), f"{name}.{key} = {value!r}"
                checked += 1
            credentials = _URL_CREDENTIALS.search(value)
            if credentials:
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:-[^}]*\}", credentials["password"]), (
                    f"{name}.{key}: {value!r}"
                )
                checked += 1
    assert checked >= 5


def test_the_service_refuses_the_default_passwords_in_production() -> None:
    from user_service.main.settings import DEFAULT_PASSWORDS

    defaults = compose_defaults()
    for name in ("POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"):
        assert defaults[name] in DEFAULT_PASSWORDS, name


def test_env_example_documents_every_variable_with_its_default() -> None:
    defaults = compose_defaults()
    documented = env_example()
    assert set(defaults) == set(documented), ENV_EXAMPLE
    for name, default in defaults.items():
        assert documented[name] == default, (
            f"{name}: .env.example says {documented[name]!r}, compose {default!r}"
        )
    # The example gives the same configuration as no .env at all.
    assert compose_config(documented) == compose_config()


def test_rabbitmq_serves_prometheus_metrics() -> None:
    plugins = RABBITMQ_PLUGINS.read_text(encoding="utf-8").strip()
    assert re.fullmatch(r"\[[a-z_]+(,[a-z_]+)*\]\.", plugins), plugins
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= set(plugins[1:-2].split(","))
    rabbitmq = compose_config()["services"]["rabbitmq"]
    assert ("./rabbitmq/enabled_plugins", "/etc/rabbitmq/enabled_plugins", True) in service_volumes(rabbitmq)
    assert rabbitmq["hostname"] == "rabbitmq"


# --------------------------------------------------------------------------------------------------------
# The Compose validator
# --------------------------------------------------------------------------------------------------------
def test_the_compose_file_matches_the_compose_spec_schema() -> None:
    require_tool("docker-compose", install="apt-get install docker-compose (ships the Compose spec schema)")
    schema = json.loads(COMPOSE_SPEC_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft201909Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(compose_config()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="default"),
        pytest.param(["--profile", "loadtest"], id="loadtest-profile"),
        pytest.param(["--env-file", str(ENV_EXAMPLE)], id="env-example"),
    ],
)
def test_docker_compose_validates_the_file(args: list[str]) -> None:
    binary = require_tool("docker-compose", install="apt-get install docker-compose")
    result = subprocess.run(
        [binary, *args, "--project-directory", str(REPO), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
