"""Every query of the dashboards and rules parses with the grammar of its language, selects metrics and
labels that exist, and every legend names only labels its query returns.

PromQL, LogQL and TraceQL are parsed by the lezer grammars Grafana's and Prometheus' query editors use
(querycheck/parse.mjs); the dashboards' PromQL also goes through Prometheus' own parser (promtool).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from observability.dashboards import legend_labels
from tests.support.required import require_tool

from .queries import (
    EXTERNAL_METRICS,
    LOKI_STREAM_LABELS,
    ExtraQuery,
    PanelQuery,
    annotation_queries,
    label_possible,
    load_rules,
    panel_queries,
    recorded_metric_labels,
    run_querycheck,
    service_metric_labels,
    variable_queries,
)

RANGE_FUNCTIONS_ON_COUNTERS = {"rate", "irate", "increase", "resets"}
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")


@pytest.fixture(scope="module")
def catalogue() -> dict[str, frozenset[str]]:
    """Labels of every series whose labels are known exactly: the API's (from its code) and the recorded."""
    service = service_metric_labels()
    return {**service, **recorded_metric_labels(service)}


@pytest.fixture(scope="module")
def queries() -> list[PanelQuery]:
    found = panel_queries()
    assert found, "the dashboards hold no query"
    return found


@pytest.fixture(scope="module")
def extra_queries() -> list[ExtraQuery]:
    return variable_queries() + annotation_queries()


@pytest.fixture(scope="module")
def checked(queries: list[PanelQuery], catalogue: dict[str, frozenset[str]]) -> list[dict[str, Any]]:
    return run_querycheck([(q.language, q.rendered) for q in queries], catalogue)


def describe_errors(query: str, result: Mapping[str, Any]) -> str:
    lines = [f"  at {e['from']}-{e['to']}: ...{e['near']}..." for e in result.get("errors", [])]
    return f"{query}\n" + "\n".join(lines)


def test_every_query_has_a_known_language(queries: list[PanelQuery]) -> None:
    unknown = [q.where for q in queries if q.language not in ("promql", "logql", "traceql")]
    assert unknown == []


def unparsed(where_and_text: list[tuple[str, str]], results: list[dict[str, Any]]) -> list[str]:
    """One line per query the grammar rejected: where it is, and the errors marked in its text."""
    return [
        f"{where}: {describe_errors(text, result)}"
        for (where, text), result in zip(where_and_text, results, strict=True)
        if not result["ok"]
    ]


def test_panel_queries_parse(queries: list[PanelQuery], checked: list[dict[str, Any]]) -> None:
    failures = unparsed([(f"{q.where} ({q.language})", q.rendered) for q in queries], checked)
    assert failures == [], "\n".join(failures)


def test_variable_and_annotation_queries_parse(extra_queries: list[ExtraQuery]) -> None:
    assert extra_queries
    results = run_querycheck([(q.language, q.rendered) for q in extra_queries])
    failures = unparsed([(q.where, q.rendered) for q in extra_queries], results)
    assert failures == [], "\n".join(failures)


def test_rule_expressions_parse() -> None:
    rules = load_rules()
    assert rules
    results = run_querycheck([("promql", r.expr) for r in rules])
    failures = unparsed([(r.where, r.expr) for r in rules], results)
    assert failures == [], "\n".join(failures)


def test_no_variable_is_left_in_a_rendered_query(queries: list[PanelQuery]) -> None:
    leftovers = [q.where for q in queries if "$" in q.rendered.replace("$1", "")]
    assert leftovers == []


def test_legends_name_only_labels_the_query_returns(
    queries: list[PanelQuery], checked: list[dict[str, Any]]
) -> None:
    failures = []
    for query, result in zip(queries, checked, strict=True):
        labels = result.get("labels")
        if not result["ok"] or labels is None:
            continue
        failures.extend(
            f"{query.where}: legend {query.legend!r} uses {label!r}, the query returns "
            f"{'at least ' if labels['open'] else ''}{labels['known']}"
            for label in sorted(query.legend_labels)
            if not label_possible(labels, label)
        )
    assert failures == [], "\n".join(failures)


def test_series_that_differ_by_labels_get_distinct_legends(
    queries: list[PanelQuery], checked: list[dict[str, Any]]
) -> None:
    """A query grouped by labels (by, on) returns one series per value: a legend without any of those
    labels would give them all the same name."""
    failures = []
    for query, result in zip(queries, checked, strict=True):
        labels = result.get("labels")
        if not result["ok"] or not labels or labels.get("open") or labels.get("scalar"):
            continue
        grouped = set(labels["known"]) & set(result.get("groupings", []))
        if grouped and not (query.legend_labels & grouped):
            failures.append(f"{query.where}: series differ by {sorted(grouped)}, legend {query.legend!r}")
    assert failures == [], "\n".join(failures)


def test_annotation_titles_use_returned_labels(extra_queries: list[ExtraQuery]) -> None:
    annotations = [q for q in extra_queries if q.legend]
    results = run_querycheck([(q.language, q.rendered) for q in annotations])
    for query, result in zip(annotations, results, strict=True):
        for label in legend_labels(query.legend):
            assert label_possible(result["labels"], label), f"{query.where}: {label!r} is not returned"


def test_logql_selects_only_stream_labels(queries: list[PanelQuery], checked: list[dict[str, Any]]) -> None:
    logql = [(q, r) for q, r in zip(queries, checked, strict=True) if q.language == "logql"]
    assert logql, "no LogQL query"
    for query, result in logql:
        assert result["ok"], query.where
        used = set(result["streamLabels"])
        assert used, f"{query.where}: no stream selector"
        assert used <= LOKI_STREAM_LABELS, (
            f"{query.where}: {sorted(used - LOKI_STREAM_LABELS)} are not Loki stream labels "
            f"(only {sorted(LOKI_STREAM_LABELS)}; filter other fields after | json)"
        )


def all_promql(queries: list[PanelQuery], checked: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = [(q.where, r) for q, r in zip(queries, checked, strict=True) if q.language == "promql" and r["ok"]]
    rules = load_rules()
    results = run_querycheck([("promql", r.expr) for r in rules])
    out += [(r.where, res) for r, res in zip(rules, results, strict=True) if res["ok"]]
    return out


def test_every_metric_exists(
    queries: list[PanelQuery], checked: list[dict[str, Any]], catalogue: dict[str, frozenset[str]]
) -> None:
    """Each metric name is one the API exports (read from its code), a recording rule records, or a
    component's metric listed in queries.EXTERNAL_METRICS."""
    failures = []
    for where, result in all_promql(queries, checked):
        for selector in result["selectors"]:
            name = selector["metric"]
            if name is None:
                failures.append(f"{where}: a selector without a metric name")
            elif name not in catalogue and name not in EXTERNAL_METRICS:
                failures.append(f"{where}: unknown metric {name!r}")
    assert failures == [], "\n".join(failures)


def test_matchers_use_labels_the_metric_has(
    queries: list[PanelQuery], checked: list[dict[str, Any]], catalogue: dict[str, frozenset[str]]
) -> None:
    """A matcher on a label the series do not carry matches nothing (or everything) without an error."""
    failures = []
    for where, result in all_promql(queries, checked):
        for selector in result["selectors"]:
            labels = catalogue.get(selector["metric"])
            if labels is None:
                continue
            unknown = set(selector["matchers"]) - labels
            if unknown:
                failures.append(
                    f"{where}: {selector['metric']} has no label {sorted(unknown)} ({sorted(labels)})"
                )
    assert failures == [], "\n".join(failures)


def test_counter_functions_only_take_counters(
    queries: list[PanelQuery], checked: list[dict[str, Any]]
) -> None:
    failures = []
    for where, result in all_promql(queries, checked):
        for call in result["calls"]:
            if call["fn"] in RANGE_FUNCTIONS_ON_COUNTERS:
                failures += [
                    f"{where}: {call['fn']}() of {m}, not a counter"
                    for m in call["metrics"]
                    if not m.endswith(COUNTER_SUFFIXES)
                ]
            if call["fn"] == "histogram_quantile":
                failures += [
                    f"{where}: histogram_quantile() of {m}, not a histogram"
                    for m in call["metrics"]
                    if not m.endswith("_bucket")
                ]
    assert failures == [], "\n".join(failures)


def test_quantiles_keep_le(queries: list[PanelQuery]) -> None:
    """histogram_quantile needs the le label through every aggregation."""
    for query in queries:
        if "histogram_quantile" in query.expr:
            assert "by (le" in query.expr.replace("by(le", "by (le"), f"{query.where}: aggregate by (le, ...)"


def test_dashboard_promql_passes_prometheus_parser(queries: list[PanelQuery], tmp_path: Path) -> None:
    """Prometheus' own parser (promtool), which also checks function names and argument types."""
    promtool = require_tool("promtool", install="apt-get install prometheus")
    promql = [q for q in queries if q.language == "promql"] + [
        q for q in variable_queries() + annotation_queries() if q.language == "promql"
    ]
    rules: list[dict[str, str]] = [
        {"record": f"dashboard:query_{index}:check", "expr": q.rendered} for index, q in enumerate(promql)
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    completed = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    if completed.returncode != 0:
        where = {f"dashboard:query_{i}:check": getattr(q, "where", "") for i, q in enumerate(promql)}
        report = completed.stdout + completed.stderr
        for record, place in where.items():
            report = report.replace(record, f"{record} [{place}]")
        pytest.fail(report, pytrace=False)


def test_traceql_parses() -> None:
    """The grammar check also covers TraceQL: the searches the runbooks suggest."""
    searches: Sequence[str] = (
        '{ resource.service.name = "user-service" && status = error }',
        '{ resource.service.name = "user-service" && span.db.system.name = "postgresql"'
        " && duration > 100ms }",
        '{ resource.service.name = "user-service" && span.http.route = "/users" && duration > 250ms }',
    )
    results = run_querycheck([("traceql", s) for s in searches])
    assert [s for s, r in zip(searches, results, strict=True) if not r["ok"]] == []


def test_the_grammar_check_catches_mistakes() -> None:
    """The checks above would notice a broken query, a wrong legend and a non-stream label."""
    results = run_querycheck(
        [
            ("promql", "sum(rate(http_server_request_duration_seconds_count[5m])"),
            ("promql", "sum by (http_route) (rate(x_total[5m])) by (le)"),
            ("logql", '{service="api"} |= "x" [5m'),
            ("traceql", "{ span.db.system = }"),
            ("promql", "sum(rate(x_total[5m]))"),
            ("promql", 'sum by (http_route) (rate(x_count{a="b"}[5m])) / on (http_route) group_left (v) y'),
            ("logql", '{service="api", route="/users"} | json'),
            ("promql", "histogram_quantile(0.9, sum by (le, http_route) (rate(x_bucket[5m])))"),
        ],
        {"x_count": frozenset({"a", "http_route"})},
    )
    assert [r["ok"] for r in results] == [False, False, False, False, True, True, True, True]
    assert results[4]["labels"]["known"] == []
    assert not results[4]["labels"]["open"]
    assert label_possible(results[5]["labels"], "v")
    assert label_possible(results[5]["labels"], "http_route")
    assert not label_possible(results[5]["labels"], "a")
    assert results[6]["streamLabels"] == ["route", "service"]
    assert not label_possible(results[7]["labels"], "le")
