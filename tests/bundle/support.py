"""Paths and loaders for the compose bundle's files, and the rule for tests that need an installed tool."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
VECTOR_CONFIG = REPO / "vector" / "vector.yaml"
LOKI_CONFIG = REPO / "loki" / "loki.yaml"
PROMETHEUS_CONFIG = REPO / "observability" / "prometheus.yml"
TEMPO_CONFIG = REPO / "observability" / "tempo.yaml"
OTEL_COLLECTOR_CONFIG = REPO / "observability" / "otel-collector.yaml"
RULES_DIR = REPO / "observability" / "rules"
GRAFANA_PROVISIONING = REPO / "grafana" / "provisioning"
GRAFANA_DATASOURCES = GRAFANA_PROVISIONING / "datasources" / "datasources.yaml"
GRAFANA_DASHBOARD_PROVIDERS = GRAFANA_PROVISIONING / "dashboards" / "dashboards.yaml"
GRAFANA_DASHBOARDS = REPO / "grafana" / "dashboards"
RABBITMQ_PLUGINS = REPO / "rabbitmq" / "enabled_plugins"

# docker-compose 1.29 (Debian package `docker-compose`) ships the Compose spec schema it validates against.
COMPOSE_SPEC_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")

# Services that run once and exit; every other service runs for good and has a healthcheck.
ONE_SHOT_SERVICES = frozenset({"migrate", "volumes-init"})


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


# --------------------------------------------------------------------------------------------------------
# Compose variable interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}
# --------------------------------------------------------------------------------------------------------
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """A compose string with its variables replaced as Compose does, from `env`."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        value = env.get(name)
        op, arg = match["op"], match["arg"] or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise KeyError(f"compose variable {name} is required: {arg}")
        return value or ""

    return _VARIABLE.sub(replace, text)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    return node


def compose_raw() -> dict[str, Any]:
    """docker-compose.yml as written (anchors resolved, variables not)."""
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def compose_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml with its variables interpolated from `env` (none: every default applies)."""
    data = _interpolate_tree(compose_raw(), env or {})
    assert isinstance(data, dict)
    return data


def compose_defaults() -> dict[str, str]:
    """Every variable the compose file reads, with the default it gives it (`${VAR:-default}`)."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    defaults: dict[str, str] = {}
    for match in _VARIABLE.finditer(text):
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
