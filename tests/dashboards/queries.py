"""Every query the dashboards and the Prometheus rules hold, and the tools to check them.

Dashboards are the JSON files under grafana/dashboards/ (read by observability/dashboards.py, which also
sets their template variables to sample values), rules the YAML files under observability/rules/.

`panel_queries()` lists every query of every panel (test_live.py runs the PromQL ones on a live Prometheus).

`run_querycheck()` parses queries with the PromQL, LogQL and TraceQL grammars of the Prometheus and
Grafana query editors (tests/dashboards/querycheck, a small Node program).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from observability.bundle import DATASOURCES_DIR, REPO, RULES_DIR
from observability.dashboards import (
    EXPECTED_DATASOURCES,
    Dashboard,
    datasource_type,
    legend_labels,
    load_dashboards,
    render,
    sample_values,
    variable_query,
)
from tests.support.required import in_ci, unavailable

RULE_TESTS_DIR = REPO / "observability" / "tests"
RUNBOOKS = REPO / "docs" / "runbooks.md"
QUERYCHECK_DIR = Path(__file__).resolve().parent / "querycheck"

# Data sources Grafana itself provides.
BUILTIN_DATASOURCE_UIDS = frozenset({"-- Grafana --", "-- Mixed --", "-- Dashboard --"})

# The stream labels Vector gives every Loki stream; nothing else is indexed.
LOKI_STREAM_LABELS = frozenset({"service", "service_name", "level", "compose_project"})

# Labels Prometheus attaches to every scraped series of the API.
TARGET_LABELS = frozenset({"job", "instance"})

LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.+?)\s*,\s*(?P<label>\w+)\s*\)\s*$", re.S)

# Metrics of the other components, by the name their exporters give them (rabbitmq_prometheus, Vector's
# internal_metrics, Loki, Tempo and its metrics generator, Prometheus itself). A name missing here is
# most likely a typo: check the component's documentation before adding it.
EXTERNAL_METRICS = frozenset(
    {
        "ALERTS",
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "prometheus_tsdb_head_series",
        "prometheus_rule_evaluation_failures_total",
        "rabbitmq_global_messages_received_total",
        "rabbitmq_global_messages_routed_total",
        "rabbitmq_global_messages_unroutable_dropped_total",
        "rabbitmq_global_messages_unroutable_returned_total",
        "rabbitmq_global_messages_confirmed_total",
        "rabbitmq_global_messages_delivered_total",
        "rabbitmq_channel_messages_published_total",
        "rabbitmq_queue_messages_ready",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_queue_consumers",
        "rabbitmq_connections",
        "rabbitmq_channels",
        "rabbitmq_consumers",
        "vector_component_received_events_total",
        "vector_component_sent_events_total",
        "vector_component_errors_total",
        "loki_distributor_lines_received_total",
        "loki_discarded_samples_total",
        "loki_ingester_memory_streams",
        "tempo_distributor_spans_received_total",
        "tempo_discarded_spans_total",
        "traces_spanmetrics_calls_total",
        "traces_spanmetrics_latency_bucket",
    }
)


# ------------------------------------------------------------------------------------------------------
# Panel queries
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    """One query of one panel target, as written and with its variables replaced."""

    dashboard: str  # the dashboard's uid
    dashboard_file: str
    panel_id: int
    panel_title: str
    ref_id: str
    language: str  # promql, logql or traceql
    expr: str
    rendered: str
    legend: str
    legend_labels: frozenset[str]
    instant: bool = False

    @property
    def where(self) -> str:
        return f"{self.dashboard_file} panel {self.panel_id} ({self.panel_title!r}) target {self.ref_id}"


LANGUAGE_OF = {"prometheus": "promql", "loki": "logql", "tempo": "traceql"}


def panel_queries(dashboards: Sequence[Dashboard] | None = None) -> list[PanelQuery]:
    """Every query of every panel target of every dashboard."""
    out: list[PanelQuery] = []
    for dashboard in dashboards if dashboards is not None else load_dashboards():
        values = sample_values(dashboard)
        for panel in dashboard.panels():
            for target in panel.get("targets", []):
                language = LANGUAGE_OF.get(datasource_type(dashboard, panel, target), "unknown")
                expr = str(target.get("expr") or target.get("query") or "")
                if target.get("hide") or not expr:
                    continue
                legend = str(target.get("legendFormat") or "")
                out.append(
                    PanelQuery(
                        dashboard=dashboard.uid,
                        dashboard_file=dashboard.path.name,
                        panel_id=int(panel["id"]),
                        panel_title=str(panel.get("title", "")),
                        ref_id=str(target.get("refId", "")),
                        language=language,
                        expr=expr,
                        rendered=render(expr, values),
                        legend=legend,
                        legend_labels=legend_labels(legend),
                        instant=bool(target.get("instant")) and not target.get("range", False),
                    )
                )
    return out


@dataclass(frozen=True)
class ExtraQuery:
    """A query outside panel targets: a variable's or an annotation's."""

    where: str
    language: str
    rendered: str
    legend: str = ""


def variable_queries(dashboards: Sequence[Dashboard] | None = None) -> list[ExtraQuery]:
    """The PromQL selector inside each `label_values(selector, label)` variable query."""
    out = []
    for dashboard in dashboards if dashboards is not None else load_dashboards():
        values = sample_values(dashboard)
        for variable in dashboard.variables:
            if variable.get("type") != "query":
                continue
            query = variable_query(variable)
            match = LABEL_VALUES.match(query)
            selector = match["selector"] if match else query
            out.append(
                ExtraQuery(
                    f"{dashboard.path.name} variable {variable['name']}", "promql", render(selector, values)
                )
            )
    return out


def annotation_queries(dashboards: Sequence[Dashboard] | None = None) -> list[ExtraQuery]:
    out = []
    for dashboard in dashboards if dashboards is not None else load_dashboards():
        values = sample_values(dashboard)
        for annotation in dashboard.model.get("annotations", {}).get("list", []):
            expr = annotation.get("expr") or annotation.get("target", {}).get("expr")
            if not expr:
                continue
            uid = (annotation.get("datasource") or {}).get("uid", "")
            language = {"prometheus": "promql", "loki": "logql"}.get(uid, "unknown")
            out.append(
                ExtraQuery(
                    f"{dashboard.path.name} annotation {annotation.get('name')!r}",
                    language,
                    render(str(expr), values),
                    str(annotation.get("titleFormat", "")),
                )
            )
    return out


# ------------------------------------------------------------------------------------------------------
# Data sources
# ------------------------------------------------------------------------------------------------------


def provisioned_datasources() -> dict[str, str]:
    """uid -> type of every data source the provisioning defines; the fixed set when it is not there yet
    (a failure in CI)."""
    files = sorted(DATASOURCES_DIR.glob("*.y*ml")) if DATASOURCES_DIR.is_dir() else []
    if not files:
        if in_ci():
            pytest.fail(f"no data source provisioning in {DATASOURCES_DIR}", pytrace=False)
        return {uid: kind for kind, uid in EXPECTED_DATASOURCES.items()}
    out: dict[str, str] = {}
    for path in files:
        for source in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("datasources", []):
            out[str(source["uid"])] = str(source["type"])
    return out


# ------------------------------------------------------------------------------------------------------
# Rules
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    file: str
    group: str
    kind: str  # "record" or "alert"
    name: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    for_: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file} group {self.group} {self.kind} {self.name}"


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml")) + sorted(RULES_DIR.glob("*.yaml"))


def load_rules() -> list[Rule]:
    out = []
    for path in rule_files():
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            for rule in group.get("rules", []):
                kind = "alert" if "alert" in rule else "record"
                out.append(
                    Rule(
                        file=path.name,
                        group=group["name"],
                        kind=kind,
                        name=rule[kind],
                        expr=str(rule["expr"]),
                        labels=dict(rule.get("labels") or {}),
                        annotations=dict(rule.get("annotations") or {}),
                        for_=rule.get("for"),
                    )
                )
    return out


# ------------------------------------------------------------------------------------------------------
# The service's own metrics, read from its code
# ------------------------------------------------------------------------------------------------------

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}


def service_metric_labels() -> dict[str, frozenset[str]]:
    """Each series name the API exports -> the labels it carries once scraped (job and instance added)."""
    import prometheus_client.metrics as client_metrics

    from user_service.infrastructure.telemetry import metrics as service_metrics
    from user_service.infrastructure.telemetry import span_export
    from user_service.infrastructure.telemetry.loop_metrics import LoopMetric

    out: dict[str, frozenset[str]] = {}
    made_by_the_relay = vars(service_metrics.relay_gauges()).values()
    # span_export keeps its drop counter next to what drops the spans.
    for value in [*vars(service_metrics).values(), *made_by_the_relay, *vars(span_export).values()]:
        if isinstance(value, LoopMetric):  # the request path's plain-number metrics
            name, kind, labelnames = value.name, value.kind, value.labelnames
        elif isinstance(value, client_metrics.MetricWrapperBase):
            name, kind, labelnames = value._name, value._type, value._labelnames
        else:
            continue
        labels = frozenset(labelnames) | TARGET_LABELS
        if kind == "info":
            continue  # its labels are its values: read from the exposition below
        for suffix in _SUFFIXES.get(kind, ("",)):
            out[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    from prometheus_client import REGISTRY

    for family in REGISTRY.collect():
        for sample in family.samples:
            if family.name.startswith("user_service_build") and sample.name.endswith("_info"):
                out[sample.name] = frozenset(sample.labels) | TARGET_LABELS
    # Added at exposition in multiprocess mode, by the Info above otherwise.
    out.setdefault("user_service_build_info", frozenset({"version"}) | TARGET_LABELS)
    return out


# ------------------------------------------------------------------------------------------------------
# The query grammars (Node)
# ------------------------------------------------------------------------------------------------------

NPM_HINT = "run npm ci in tests/dashboards/querycheck"


def querycheck_ready() -> None:
    """Skips (fails in CI) unless Node and the grammars are installed."""
    if shutil.which("node") is None:
        unavailable("node is not installed")
    for package in ("@prometheus-io/lezer-promql", "@grafana/lezer-logql", "@grafana/lezer-traceql"):
        if not (QUERYCHECK_DIR / "node_modules" / package).is_dir():
            unavailable(NPM_HINT)


def run_querycheck(
    items: Sequence[tuple[str, str]], catalogue: Mapping[str, frozenset[str]] | None = None
) -> list[dict[str, Any]]:
    """Parses each (language, query); one result per item: ok, errors (from, to, near) and, for PromQL and
    LogQL, what the query selects and which labels its result carries (querycheck/parse.mjs)."""
    querycheck_ready()
    payload = {
        "queries": [{"lang": lang, "query": query} for lang, query in items],
        "catalogue": {name: sorted(labels) for name, labels in (catalogue or {}).items()},
    }
    node = shutil.which("node") or "node"
    completed = subprocess.run(
        [node, "parse.mjs"],
        cwd=QUERYCHECK_DIR,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, f"querycheck failed:\n{completed.stderr}"
    results: list[dict[str, Any]] = json.loads(completed.stdout)
    assert len(results) == len(items)
    return results


def label_possible(labels: Mapping[str, Any], name: str) -> bool:
    """Whether a result with these labels (querycheck's analysis) can carry label `name`."""
    if name in labels.get("known", []):
        return True
    return bool(labels.get("open")) and name not in labels.get("removed", [])


def recorded_metric_labels(base: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """The labels each recording rule's series carry, worked out from its expression and its labels.
    Rules recorded from other recorded series are resolved in turn; a name with an open label set (it
    keeps labels of a metric nobody catalogued) is left out."""
    rules = [r for r in load_rules() if r.kind == "record"]
    known: dict[str, frozenset[str]] = dict(base)
    for _ in range(len(rules) + 1):
        results = run_querycheck([("promql", r.expr) for r in rules], known)
        found: dict[str, set[str]] = {}
        open_names = set()
        for rule, result in zip(rules, results, strict=True):
            labels = result.get("labels") or {}
            if not result["ok"] or labels.get("open"):
                open_names.add(rule.name)
                continue
            found.setdefault(rule.name, set()).update(labels.get("known", []), rule.labels)
        new = {name: frozenset(labels) for name, labels in found.items() if name not in open_names}
        merged = {**base, **new}
        if merged == known:
            break
        known = merged
    return {name: labels for name, labels in known.items() if name not in base}
