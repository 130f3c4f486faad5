"""Grafana's provisioning and settings: data sources wired to each other by uid, the dashboards folder."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from observability.bundle import DASHBOARDS_DIR, compose_config, compose_raw, load_yaml

from .support import (
    GRAFANA_DASHBOARD_PROVIDERS,
    GRAFANA_DATASOURCES,
    GRAFANA_PROVISIONING,
    bind_mount,
    unescape_grafana,
)
from .vrl import loki_sinks

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
# uids Grafana defines itself, and dashboard variables (resolved at view time).
BUILT_IN_UIDS = {"grafana", "-- Grafana --", "-- Mixed --", "-- Dashboard --", "__expr__"}


@pytest.fixture(scope="module")
def datasources() -> dict[str, dict[str, Any]]:
    config = load_yaml(GRAFANA_DATASOURCES)
    assert config["apiVersion"] == 1
    by_uid = {ds["uid"]: ds for ds in config["datasources"]}
    assert len(by_uid) == len(config["datasources"]), "duplicate uid"
    return by_uid


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _referenced_uids(node: Any) -> set[str]:
    uids = set()
    for key, value in _walk(node):
        if key == "datasourceUid" and isinstance(value, str):
            uids.add(value)
        elif key == "datasource" and isinstance(value, dict) and isinstance(value.get("uid"), str):
            uids.add(value["uid"])
    return {uid for uid in uids if uid not in BUILT_IN_UIDS and not uid.startswith("$")}


def test_the_data_sources_have_fixed_uids(datasources: dict[str, dict[str, Any]]) -> None:
    assert {uid: ds["type"] for uid, ds in datasources.items()} == {
        "prometheus": "prometheus",
        "loki": "loki",
        "tempo": "tempo",
    }
    assert [uid for uid, ds in datasources.items() if ds.get("isDefault")] == ["prometheus"]


def test_every_referenced_uid_exists(datasources: dict[str, dict[str, Any]]) -> None:
    files = sorted(GRAFANA_PROVISIONING.rglob("*.y*ml")) + sorted(DASHBOARDS_DIR.rglob("*.json"))
    referenced: dict[str, set[str]] = {}
    for path in files:
        data = load_yaml(path) if path.suffix != ".json" else json.loads(path.read_text(encoding="utf-8"))
        for uid in _referenced_uids(data):
            referenced.setdefault(uid, set()).add(str(path.relative_to(GRAFANA_PROVISIONING.parent.parent)))
    assert {"prometheus", "loki", "tempo"} <= set(referenced)
    missing = {uid: sorted(paths) for uid, paths in referenced.items() if uid not in datasources}
    assert not missing


def test_the_urls_point_at_the_compose_services(datasources: dict[str, dict[str, Any]]) -> None:
    services = compose_config()["services"]
    for uid, port in (("prometheus", 9090), ("loki", 3100), ("tempo", 3200)):
        assert datasources[uid]["url"] == f"http://{uid}:{port}"
        assert datasources[uid]["access"] == "proxy"
        assert f"http://127.0.0.1:{port}/" in " ".join(services[uid]["healthcheck"]["test"])


def test_no_grafana_macro_is_lost_to_environment_expansion() -> None:
    """Grafana expands $VAR and ${VAR} in provisioning files: its own macros must be written with $$."""
    for path in GRAFANA_PROVISIONING.rglob("*.y*ml"):
        text = path.read_text(encoding="utf-8")
        single = re.findall(r"(?<!\$)\$(?!\$)[{\w]+", text.replace("$$", ""))
        assert not single, f"{path}: {single}"


def test_exemplars_link_to_tempo(datasources: dict[str, dict[str, Any]]) -> None:
    destinations = datasources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert [(d["name"], d["datasourceUid"]) for d in destinations] == [("trace_id", "tempo")]


def test_the_loki_derived_field_links_the_exported_traces_only(
    datasources: dict[str, dict[str, Any]],
) -> None:
    (field,) = datasources["loki"]["jsonData"]["derivedFields"]
    assert field["datasourceUid"] == "tempo"
    assert unescape_grafana(field["url"]) == "${__value.raw}"
    pattern = re.compile(field["matcherRegex"])  # the same syntax in Grafana's JavaScript
    kept = {"timestamp": "2026-11-26T17:04:26.123456Z", "level": "info", "event": "request"}
    for entry in (
        {**kept, "trace_sampled": True, "trace_id": TRACE_ID},  # the access line: the decision first
        {**kept, "trace_id": TRACE_ID, "span_id": "00f067aa0ba902b7", "trace_sampled": True},
    ):
        compact = json.dumps(entry, separators=(",", ":"))  # the service's own form (orjson)
        spaced = json.dumps(entry)
        for line in (compact, spaced):
            match = pattern.search(line)
            assert match, line
            assert match.group(1) == TRACE_ID, line
    dropped = json.dumps({**kept, "trace_id": TRACE_ID, "trace_sampled": False}, separators=(",", ":"))
    assert pattern.search(dropped) is None  # its trace was not exported: no link to nothing
    assert pattern.search('{"level":"info","event":"started"}') is None


def test_traces_link_to_their_log_lines(datasources: dict[str, dict[str, Any]]) -> None:
    links = datasources["tempo"]["jsonData"]["tracesToLogsV2"]
    assert links["datasourceUid"] == "loki"
    assert links["filterByTraceID"] is True
    assert links["customQuery"] is True
    query = unescape_grafana(links["query"])
    assert query == '{service_name="user-service"} | trace_id="${__trace.traceId}"'
    # `service_name` is a stream label Vector sets to the containers' service.name (the traces' service
    # name), trace_id structured metadata.
    selector = re.fullmatch(r'\{(\w+)="([\w-]+)"\} \| (\w+)="\$\{__trace\.traceId\}"', query)
    assert selector
    label, value, metadata = selector.groups()
    sinks = loki_sinks()
    assert all(sink["labels"][label] == "{{ service_name }}" for sink in sinks.values())
    assert value == compose_config()["services"]["api"]["environment"]["OTEL_SERVICE_NAME"]
    assert metadata in sinks["loki_traced"]["structured_metadata"]
    assert metadata not in sinks["loki_traced"]["labels"]


def test_traces_link_to_span_metrics_and_the_service_graph(datasources: dict[str, dict[str, Any]]) -> None:
    tempo = datasources["tempo"]["jsonData"]
    metrics = tempo["tracesToMetrics"]
    assert metrics["datasourceUid"] == "prometheus"
    assert {"key": "service.name", "value": "service"} in metrics["tags"]
    for query in metrics["queries"]:
        promql = unescape_grafana(query["query"])
        assert "{$__tags" in promql, promql
        assert "traces_spanmetrics_" in promql, promql
    assert tempo["serviceMap"] == {"datasourceUid": "prometheus"}
    assert tempo["nodeGraph"] == {"enabled": True}
    assert tempo["lokiSearch"] == {"datasourceUid": "loki"}


def test_one_folder_holds_every_dashboard_file() -> None:
    config = load_yaml(GRAFANA_DASHBOARD_PROVIDERS)
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "User Service"
    assert provider["options"]["foldersFromFilesStructure"] is False
    grafana = compose_config()["services"]["grafana"]
    assert provider["options"]["path"] == bind_mount(grafana, "grafana/dashboards")
    assert bind_mount(grafana, "grafana/provisioning") == "/etc/grafana/provisioning"
    assert Path(GRAFANA_DASHBOARD_PROVIDERS).parent.name == "dashboards"


def test_grafana_lets_anonymous_visitors_view_and_nothing_more() -> None:
    env = compose_config()["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    raw = compose_raw()["services"]["grafana"]["environment"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:-[^}]+\}", raw["GF_SECURITY_ADMIN_PASSWORD"])
    assert not any("Admin" in str(value) for key, value in env.items() if "ANONYMOUS" in key)
