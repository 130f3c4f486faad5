"""The Kubernetes overlays as `kubectl kustomize` renders them, and the tools that check them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.support.required import require_tool, unavailable

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
OVERLAYS = ("production", "dev")
CHECKS = KUBERNETES / "checks"
# Where `uv tool install` puts the command-line tools .ci/run installs (kubernetes-validate, checkov).
UV_TOOL_BIN = Path(os.environ.get("XDG_BIN_HOME", Path.home() / ".local" / "bin"))

WORKLOADS = ("Deployment", "StatefulSet", "Job")


def kubectl() -> str:
    return require_tool("kubectl", install="kubectl 1.32 with its built-in Kustomize")


def tool(name: str, pin: str) -> str:
    return require_tool(name, str(UV_TOOL_BIN / name), install=f"uv tool install {pin}")


@cache
def rendered_text(overlay: str) -> str:
    """`kubectl kustomize deploy/kubernetes/overlays/<overlay>`: no flag, so the default load restrictor."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def rendered(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered_text(overlay)) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = find(objects, kind, name)
    return found


def by_prefix(objects: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, Any]:
    """The one object of a kind whose (generated, hash-suffixed) name starts with `prefix-`."""
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(prefix + "-")]
    return found


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (o for o in objects if o["kind"] in WORKLOADS)


def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name."""
    return {entry["name"]: entry for entry in container.get("env", [])}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions with In) selects these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def write_objects(objects: list[dict[str, Any]], folder: Path) -> list[Path]:
    """One file per object, as the tools read them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, obj in enumerate(objects):
        path = folder / f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths


def node_checks() -> tuple[str, Path]:
    """node and the validation script, with its locked dependencies installed."""
    node = require_tool("node", install="apt-get install nodejs")
    if not (CHECKS / "node_modules" / "@kubernetes-models" / "prometheus-operator").is_dir():
        unavailable(
            f"the checks' npm packages are not installed (npm ci --prefix {CHECKS.relative_to(REPO)})"
        )
    return node, CHECKS / "validate.mjs"
