"""The bundle's files as the tools and the tests read them: where they are, YAML, and docker-compose.yml
with its variables interpolated as Compose does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROMETHEUS_CONFIG = REPO / "observability" / "prometheus.yml"
RULES_DIR = REPO / "observability" / "rules"
DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
DATASOURCES_DIR = REPO / "grafana" / "provisioning" / "datasources"


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


# --------------------------------------------------------------------------------------------------------
# Compose variable interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}
# --------------------------------------------------------------------------------------------------------
VARIABLE = re.compile(
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

    return VARIABLE.sub(replace, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


def compose_raw() -> dict[str, Any]:
    """docker-compose.yml as written (anchors resolved, variables not)."""
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def compose_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml with its variables interpolated from `env` (none: every default applies)."""
    data = interpolate_tree(compose_raw(), env or {})
    assert isinstance(data, dict)
    return data
