"""The bundle's files the tests check besides those the tools read too (observability/bundle.py), and
helpers for reading the compose file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from observability.bundle import COMPOSE_FILE, DATASOURCES_DIR, REPO, VARIABLE

ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
VECTOR_CONFIG = REPO / "vector" / "vector.yaml"
LOKI_CONFIG = REPO / "loki" / "loki.yaml"
TEMPO_CONFIG = REPO / "observability" / "tempo.yaml"
OTEL_COLLECTOR_CONFIG = REPO / "observability" / "otel-collector.yaml"
GRAFANA_PROVISIONING = REPO / "grafana" / "provisioning"
GRAFANA_DATASOURCES = DATASOURCES_DIR / "datasources.yaml"
GRAFANA_DASHBOARD_PROVIDERS = GRAFANA_PROVISIONING / "dashboards" / "dashboards.yaml"
RABBITMQ_PLUGINS = REPO / "rabbitmq" / "enabled_plugins"

# docker-compose 1.29 (Debian package `docker-compose`) ships the Compose spec schema it validates against.
COMPOSE_SPEC_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")

# Services that run once and exit; every other service runs for good and has a healthcheck.
ONE_SHOT_SERVICES = frozenset({"migrate", "volumes-init"})


def compose_defaults() -> dict[str, str]:
    """Every variable the compose file reads, with the default it gives it (`${VAR:-default}`)."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    defaults: dict[str, str] = {}
    for match in VARIABLE.finditer(text):
        name = match["braced"] or match["named"]
        if name:
            defaults[name] = match["arg"] or ""
    return defaults


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example: not NAME=value: {raw!r}"
        values[name.strip()] = value.strip()
    return values


def service_volumes(service: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each volume of a service, short syntax."""
    result = []
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"use the short volume syntax: {entry!r}"
        parts = entry.split(":")
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else "rw"
        result.append((source, target, "ro" in mode.split(",")))
    return result


def bind_mount(service: Mapping[str, Any], repo_path: str) -> str:
    """The container path where a repository file or folder (./path) is mounted in a service."""
    for source, target, _ in service_volumes(service):
        if source.rstrip("/") == f"./{repo_path}".rstrip("/"):
            return target
    raise AssertionError(f"./{repo_path} is not mounted in this service")


def unescape_grafana(value: str) -> str:
    """A provisioning value as Grafana reads it: `$$` is a literal `$` (environment expansion aside)."""
    return value.replace("$$", "$")
