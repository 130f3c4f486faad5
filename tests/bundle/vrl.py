"""Vector's log pipeline (vector/vector.yaml), run on one line at a time with Vector's VRL engine.

`run_vector_remap(line)` runs the `remap` transform's program on a line as the `docker_logs` source would
hand it over; `ship_to_loki(line)` goes on through the `route` transform and renders what the chosen Loki
sink sends: stream labels, structured metadata and the log line. Templates are rendered as Vector does,
and a field that a template names but the event lacks is an error (Vector would count it as a component
error), so a test sees it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from vrl_python import VRLRuntime

from observability.bundle import compose_config, load_yaml

from .support import VECTOR_CONFIG

REMAP = "service_logs"
ROUTE = "by_trace"
PROJECT = "user-service"

_runtime = VRLRuntime()


@cache
def vector_config() -> dict[str, Any]:
    config = load_yaml(VECTOR_CONFIG)
    assert isinstance(config, dict)
    return config


def remap_source() -> str:
    """The VRL program of the remap transform, as Vector reads it."""
    source = vector_config()["transforms"][REMAP]["source"]
    assert isinstance(source, str)
    return source


def docker_event(
    line: str,
    container: str = f"{PROJECT}-api-1",
    *,
    service: str | None = None,
    project: str = PROJECT,
    stream: str = "stdout",
) -> dict[str, Any]:
    """An event as Vector's docker_logs source emits it for one line of a compose container.

    The compose service defaults to the one in the container's name (`<project>-<service>-<n>`); the
    container's labels are compose's own and those docker-compose.yml gives that service.
    """
    if service is None:
        service = re.sub(r"[-_]\d+$", "", container)
        for prefix in (f"{project}-", f"{project}_"):
            service = service.removeprefix(prefix)
    own_labels = compose_config()["services"].get(service, {}).get("labels", {})
    return {
        "message": line,
        "container_name": container,
        "container_id": "0123456789abcdef" * 4,
        "container_created_at": "2026-11-26T17:00:00.000000000Z",
        "image": "user-service:local",
        "host": "docker-host",
        "stream": stream,
        "source_type": "docker_logs",
        "timestamp": "2026-11-26T17:04:30.000000000Z",
        "label": {
            "com.docker.compose.project": project,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": "1",
            "com.docker.compose.oneoff": "False",
            **own_labels,
        },
    }


def run_vector_remap(line: str, container: str = f"{PROJECT}-api-1", **event: Any) -> dict[str, Any]:
    """The event after the remap transform, for one log line of `container` (see `docker_event`)."""
    result = _runtime.execute(remap_source(), docker_event(line, container, **event))
    processed = result.processed_event
    assert isinstance(processed, dict)
    return processed


@dataclass(frozen=True)
class LokiEntry:
    sink: str
    labels: dict[str, str]
    structured_metadata: dict[str, str]
    line: str


class TemplateError(AssertionError):
    """A sink template names a field the event does not have."""


_TEMPLATE = re.compile(r"\{\{\s*\.?([A-Za-z0-9_.]+)\s*\}\}")


def render_template(template: str, event: dict[str, Any]) -> str:
    def field(match: re.Match[str]) -> str:
        value: Any = event
        for part in match[1].split("."):
            if not isinstance(value, dict) or part not in value or value[part] is None:
                raise TemplateError(f"template {template!r}: the event has no field {match[1]!r}")
            value = value[part]
        return str(value)

    return _TEMPLATE.sub(field, template)


def route_outputs(event: dict[str, Any]) -> list[str]:
    """The outputs of the route transform the event goes to (`_unmatched` when no route matches)."""
    routes = vector_config()["transforms"][ROUTE]["route"]
    matched = [
        name for name, condition in routes.items() if _runtime.execute(condition, event).runtime_result
    ]
    return [f"{ROUTE}.{name}" for name in matched] or [f"{ROUTE}._unmatched"]


def loki_sinks() -> dict[str, dict[str, Any]]:
    return {name: sink for name, sink in vector_config()["sinks"].items() if sink["type"] == "loki"}


def ship_to_loki(line: str, container: str = f"{PROJECT}-api-1", **event: Any) -> list[LokiEntry]:
    """What the Loki sinks send for one log line: one entry per sink the line reaches."""
    processed = run_vector_remap(line, container, **event)
    outputs = set(route_outputs(processed))
    entries = []
    for name, sink in loki_sinks().items():
        if not outputs & set(sink["inputs"]):
            continue
        labels = {key: render_template(value, processed) for key, value in sink["labels"].items()}
        metadata = {
            key: render_template(value, processed)
            for key, value in sink.get("structured_metadata", {}).items()
        }
        assert sink["encoding"]["codec"] == "text"
        entries.append(LokiEntry(name, labels, metadata, str(processed["message"])))
    return entries
