"""The OpenTelemetry Collector's configuration, checked for its wiring (no collector binary runs here).

`wiring_problems` finds what the collector would refuse or what would silently lose data: a pipeline
naming an undefined component, a component defined and never used, a pipeline without memory_limiter first
and batch, an exporter pointing at no compose service or at a port that service does not listen on, a
signal with no pipeline to its backend. tests/bundle/test_otel_collector.py proves it on broken copies.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from observability.bundle import load_yaml

from .support import LOKI_CONFIG, OTEL_COLLECTOR_CONFIG, TEMPO_CONFIG

SECTIONS = ("receivers", "processors", "exporters", "connectors")
SIGNALS = ("traces", "metrics", "logs")
# Which backend each signal goes to, and the path its exporter must use there.
BACKENDS = {"traces": ("tempo", ""), "metrics": ("prometheus", "/api/v1/write"), "logs": ("loki", "/otlp")}


def collector_config() -> dict[str, Any]:
    config: dict[str, Any] = load_yaml(OTEL_COLLECTOR_CONFIG)
    return config


def endpoint_port(endpoint: str) -> int:
    return int(str(endpoint).rpartition(":")[2])


def _endpoints(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "endpoint" and isinstance(v, str)]
        return found + [e for k, v in node.items() if k != "endpoint" for e in _endpoints(v)]
    if isinstance(node, list):
        return [e for item in node for e in _endpoints(item)]
    return []


def listening_ports(compose: dict[str, Any], service: str) -> set[int]:
    """The ports a compose service listens on: its published container ports, and those its own
    configuration file opens (for the backends whose config this repository holds)."""
    svc = compose["services"][service]
    ports = {int(str(port).rpartition(":")[2]) for port in svc.get("ports", [])}
    if service == "tempo":
        tempo = load_yaml(TEMPO_CONFIG)
        ports |= {tempo["server"]["http_listen_port"], tempo["server"]["grpc_listen_port"]}
        ports |= {endpoint_port(e) for e in _endpoints(tempo["distributor"]["receivers"])}
    elif service == "loki":
        loki = load_yaml(LOKI_CONFIG)
        ports |= {loki["server"]["http_listen_port"], loki["server"]["grpc_listen_port"]}
    elif service == "prometheus":
        flags = [f for f in svc.get("command", []) if f.startswith("--web.listen-address=")]
        ports.add(endpoint_port(flags[0]) if flags else 9090)
    elif service == "otel-collector":
        ports |= {endpoint_port(e) for e in _endpoints(collector_config()["receivers"])}
    return ports


def exporter_target(exporter: dict[str, Any]) -> tuple[str, int, str]:
    """(host, port, path) of an exporter's endpoint; a gRPC endpoint is host:port without a scheme."""
    endpoint = exporter.get("endpoint", "")
    if "://" not in endpoint:
        host, _, port = endpoint.rpartition(":")
        return host, int(port), ""
    url = urlsplit(endpoint)
    default = 443 if url.scheme == "https" else 80
    return url.hostname or "", url.port or default, url.path.rstrip("/")


def pipeline_problems(config: dict[str, Any], used: dict[str, set[str]]) -> list[str]:
    """Each pipeline's components defined, at least one receiver and exporter, memory_limiter first, batch."""
    problems = []
    defined = {section: set((config.get(section) or {}).keys()) for section in SECTIONS}
    for name, pipeline in (config.get("service", {}).get("pipelines") or {}).items():
        if name.partition("/")[0] not in SIGNALS:
            problems.append(f"pipeline {name}: not a traces, metrics or logs pipeline")
        for section in ("receivers", "processors", "exporters"):
            if not pipeline.get(section):
                problems.append(f"pipeline {name}: no {section[:-1]}")
            for component in pipeline.get(section) or []:
                # A connector is the exporter of one pipeline and the receiver of another.
                owner = (
                    "connectors"
                    if section != "processors" and component in defined["connectors"]
                    else section
                )
                used[owner].add(component)
                if component not in defined[owner]:
                    problems.append(f"pipeline {name}: {section[:-1]} {component} is not defined")
        kinds = [component.partition("/")[0] for component in pipeline.get("processors") or []]
        if kinds[:1] != ["memory_limiter"]:
            problems.append(f"pipeline {name}: memory_limiter is not the first processor")
        if "batch" not in kinds:
            problems.append(f"pipeline {name}: no batch processor")
    return problems


def unused_problems(config: dict[str, Any], used: dict[str, set[str]]) -> list[str]:
    problems = [
        f"{section[:-1]} {component} is defined but no pipeline uses it"
        for section in SECTIONS
        for component in sorted(set((config.get(section) or {}).keys()) - used[section])
    ]
    extensions = set((config.get("extensions") or {}).keys())
    listed = set(config.get("service", {}).get("extensions") or [])
    problems += [
        f"extension {e} is defined but not in service.extensions" for e in sorted(extensions - listed)
    ]
    problems += [
        f"extension {e} is in service.extensions but not defined" for e in sorted(listed - extensions)
    ]
    return problems


def _endpoint_problems(config: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    problems = []
    services = compose.get("services", {})
    for name, exporter in (config.get("exporters") or {}).items():
        if "endpoint" not in (exporter or {}):
            continue
        host, port, _ = exporter_target(exporter)
        if host not in services:
            problems.append(f"exporter {name}: {host} is not a compose service")
        elif port not in listening_ports(compose, host):
            problems.append(f"exporter {name}: {host} does not listen on {port}")
    return problems


def _signal_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    exporters = config.get("exporters") or {}
    pipelines = config.get("service", {}).get("pipelines") or {}
    for signal, (backend, path) in BACKENDS.items():
        targets = {
            exporter_target(exporters[exporter])[::2]
            for name, pipeline in pipelines.items()
            if name.partition("/")[0] == signal
            for exporter in pipeline.get("exporters") or []
            if "endpoint" in (exporters.get(exporter) or {})
        }
        if (backend, path) not in targets:
            problems.append(f"no {signal} pipeline exports to {backend}{path}")
    return problems


def wiring_problems(config: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    """Everything wrong with a collector config's wiring, one line each; empty when it is sound."""
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    problems = pipeline_problems(config, used)
    problems += unused_problems(config, used)
    problems += _endpoint_problems(config, compose)
    problems += _signal_problems(config)
    return problems
