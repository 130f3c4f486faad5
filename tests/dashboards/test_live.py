"""Every dashboard panel that reads the service's metrics shows data when a real Prometheus scrapes the
real service under load.

One run for the module (observability/live.py): the service as a subprocess on the session's database
with BROKER_URL set (so its outbox relay publishes to RabbitMQ and the outbox metrics move), the real
Prometheus (/usr/bin/prometheus, with the bundle's flags, `--enable-feature=exemplar-storage` among them)
scraping it every second with observability/prometheus.yml and evaluating observability/rules/*.yml
every second, and a 20 s load of creates, reads, lists, renames, full-name changes and deletes, with
404s (unknown ids and routes), 405s, 409s and 422s. Then, for every PromQL query of every dashboard
that reads the service's metrics, the recording rules built on them, or Prometheus' own metrics, the
query is run at the end of the load through `/api/v1/query`, with its variables set as a user would set
them (`$instance` the service's target, `$route` a real route, `$__rate_interval` 30s, `$__range` 1m):
it must return at least one series, one of them with a number (not NaN), and every series must carry
the labels the panel's legend names. The latency histogram must also have stored exemplars whose
`trace_id` leads to the access log line of that very request.

Not checked live, because the component that exports their metrics does not run here:
- Users and events, panels 12-16 (RabbitMQ): `rabbitmq_*` comes from RabbitMQ's rabbitmq_prometheus
  plugin, which the test machines' RabbitMQ does not enable. When the plugin answers on 127.0.0.1:15692
  (or RABBITMQ_PROMETHEUS), the run adds the bundle's `rabbitmq` job and these panels are checked too.
- Database, panels 5-7 (SQL statements): `traces_spanmetrics_*` is written by Tempo's metrics generator.
- Telemetry pipeline, panels 7-11 and 14-15: Vector, Loki and Tempo metrics (its panel 16, the service's
  own dropped spans, is checked).
These components run in the compose bundle only (no package for the test machines). Loki (LogQL) and
Tempo (TraceQL) panels are not Prometheus queries and are not part of this check either.

Needs Prometheus and RabbitMQ: skipped without them, a failure in CI (CI set).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson
import pytest

from observability.dashboards import (
    Dashboard,
    builtin_values,
    grafana_regex_value,
    load_dashboards,
    render,
    sample_values,
    variable_query,
)
from observability.live import (
    RABBITMQ_PROMETHEUS,
    LiveRun,
    excluded_reason,
    live_run,
    reachable,
    running_components,
)
from tests.bundle.prom import prometheus_binary

from .queries import LABEL_VALUES, PanelQuery, panel_queries

pytestmark = pytest.mark.broker

LOAD_SECONDS = 20
ROUTE = "/users/{user_id}"  # the route `$route` is set to: it answers 200, 404, 409 and 422
LIVE_BUILTINS = builtin_values("30s", interval_s=5, range_s=60)
HEX32 = re.compile(r"^[0-9a-f]{32}$")

RABBITMQ = reachable(RABBITMQ_PROMETHEUS)
RUNNING = running_components(RABBITMQ)
DASHBOARDS = {d.uid: d for d in load_dashboards()}
PROMQL = [q for q in panel_queries() if q.language == "promql"]
LIVE = [q for q in PROMQL if excluded_reason(q.expr, RUNNING) is None]
EXCLUDED = [q for q in PROMQL if excluded_reason(q.expr, RUNNING) is not None]


def query_id(q: PanelQuery) -> str:
    return f"{q.dashboard}-{q.panel_id}-{q.ref_id}"


async def _empty(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE users, outbox")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def run(database_url: str, broker_url: str) -> Iterator[LiveRun]:
    prometheus_binary()  # a skip without it, a failure in CI
    asyncio.run(_empty(database_url))  # the outbox panels show this run's events only
    env = {"DATABASE_URL": database_url, "BROKER_URL": broker_url}
    rabbitmq = RABBITMQ_PROMETHEUS if RABBITMQ else None
    with live_run(env, LOAD_SECONDS, rabbitmq_target=rabbitmq) as live:
        yield live


def live_values(run: LiveRun, dashboard: Dashboard) -> dict[str, str]:
    values = {**sample_values(dashboard), **LIVE_BUILTINS}
    values["instance"] = grafana_regex_value(run.instance)
    values["route"] = grafana_regex_value(ROUTE)
    return values


def scalar(run: LiveRun, promql: str) -> float:
    result = run.query(promql)
    assert len(result) == 1, f"{promql}: {result}"
    return float(result[0]["value"][1])


def test_the_load_ran_with_every_kind_of_answer(run: LiveRun) -> None:
    assert not run.load.errors, run.load.errors
    assert {200, 201, 404, 405, 409, 422} <= set(run.load.statuses), run.load.statuses
    assert not [status for status in run.load.statuses if status >= 500], run.load.statuses
    assert run.load.requests > 20 * LOAD_SECONDS, run.load.statuses


def test_the_relay_published_the_events_of_the_load(run: LiveRun) -> None:
    assert scalar(run, 'max(outbox_relay_active{job="user-service"})') == 1
    assert scalar(run, 'max(outbox_broker_connected{job="user-service"})') == 1
    created = scalar(
        run, 'sum(increase(user_events_committed_total{job="user-service", type="user.created"}[1m]))'
    )
    published = scalar(run, 'sum(increase(outbox_published_total{job="user-service"}[1m]))')
    assert created > 0
    assert published >= created


@pytest.mark.parametrize("dashboard", sorted(DASHBOARDS), ids=str)
def test_dashboard_variables_offer_live_values(run: LiveRun, dashboard: str) -> None:
    board = DASHBOARDS[dashboard]
    values = live_values(run, board)
    for variable in board.variables:
        if variable.get("type") != "query":
            continue
        match = LABEL_VALUES.match(variable_query(variable))
        assert match, f"{dashboard} variable {variable['name']}: not a label_values() query"
        selector = render(match["selector"], values)
        found = {
            s["metric"].get(match["label"]) for s in run.query(f"group by ({match['label']}) ({selector})")
        }
        expected = {"instance": run.instance, "route": ROUTE}.get(variable["name"])
        assert found - {None}, f"{dashboard} variable {variable['name']}: no values for {selector}"
        if expected is not None:
            assert expected in found, f"{dashboard} variable {variable['name']}: {found}"


@pytest.mark.parametrize("query", LIVE, ids=query_id)
def test_panel_query_returns_series_with_its_legend_labels(run: LiveRun, query: PanelQuery) -> None:
    promql = render(query.expr, live_values(run, DASHBOARDS[query.dashboard]))
    result = run.query(promql)
    assert result, f"{query.where}: no series for\n{promql}"
    missing = [
        (sorted(query.legend_labels - series["metric"].keys()), series["metric"])
        for series in result
        if not query.legend_labels <= series["metric"].keys()
    ]
    assert not missing, f"{query.where}: legend {query.legend!r} names labels the series lack: {missing}"
    values = [float(series["value"][1]) for series in result]
    assert any(math.isfinite(v) for v in values), f"{query.where}: only NaN/Inf for\n{promql}\n{result}"
    if "$instance" in query.expr:  # the variable narrows the result to the service's target
        instances = {series["metric"].get("instance", run.instance) for series in result}
        assert instances == {run.instance}, f"{query.where}: {instances}"
    if "$route" in query.expr:
        routes = {series["metric"].get("http_route", ROUTE) for series in result}
        assert routes == {ROUTE}, f"{query.where}: {routes}"


def test_only_panels_of_components_that_do_not_run_here_are_left_out() -> None:
    assert LIVE, "no dashboard query reads the service's metrics"
    reasons = {query_id(q): excluded_reason(q.expr, RUNNING) for q in EXCLUDED}
    # Every query that reads a metric of the service or of its rules is checked live.
    service = re.compile(r"\b(?:http_server_|users_|outbox_|db_client_|user_service_|slo:)")
    assert not [q.where for q in EXCLUDED if service.search(q.expr)], reasons


def test_latency_exemplars_lead_to_the_request_log_line(run: LiveRun) -> None:
    series = run.prom.query_exemplars(
        'http_server_request_duration_seconds_bucket{job="user-service"}', run.started - 5, run.ended + 5
    )
    stored = [(s["seriesLabels"], e) for s in series for e in s.get("exemplars", [])]
    assert stored, series
    assert all(HEX32.match(e["labels"].get("trace_id", "")) for _, e in stored), stored[:5]
    assert {labels["instance"] for labels, _ in stored} == {run.instance}
    requests: dict[str, dict[str, Any]] = {}
    for line in run.service.output().splitlines():
        if line.startswith("{"):
            record = orjson.loads(line)
            if record.get("event") == "request" and record.get("trace_id"):
                requests[record["trace_id"]] = record
    matched = [
        (labels, exemplar, requests[exemplar["labels"]["trace_id"]])
        for labels, exemplar in stored
        if exemplar["labels"]["trace_id"] in requests
    ]
    assert matched, "no exemplar's trace_id is in the service's access log"
    for labels, exemplar, record in matched:
        assert record["route"] == labels["http_route"], (labels, record)
        assert str(record["status"]) == labels["http_response_status_code"], (labels, record)
        assert record["method"] == labels["http_request_method"], (labels, record)
        assert float(exemplar["value"]) <= float(labels["le"]), (labels, exemplar)
