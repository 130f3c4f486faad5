"""The dashboards' structure: they load, name only provisioned data sources, define every variable they
use, and every panel has a unique id and a description."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from observability.bundle import DASHBOARDS_DIR
from observability.dashboards import (
    Dashboard,
    dashboard_files,
    load_dashboards,
    used_variables,
    variable_query,
)

from .queries import BUILTIN_DATASOURCE_UIDS, panel_queries, provisioned_datasources

DASHBOARDS = load_dashboards()
IDS = [d.path.name for d in DASHBOARDS]

# The dashboards the bundle promises, by uid.
EXPECTED_UIDS = {
    "user-service-overview",
    "user-service-events",
    "user-service-database",
    "user-service-slo",
    "telemetry-pipeline",
}


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(json path, value) of every value in a JSON document."""
    yield path, node
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def test_every_dashboard_file_is_a_json_object() -> None:
    files = dashboard_files()
    assert files, f"no dashboards in {DASHBOARDS_DIR}"
    for path in files:
        model = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(model, dict), path.name
        assert model.get("title"), f"{path.name} has no title"
        assert isinstance(model.get("panels"), list), f"{path.name} has no panel list"
        assert model["panels"], f"{path.name} has no panels"


def test_the_promised_dashboards_exist_with_fixed_unique_uids() -> None:
    uids = Counter(d.uid for d in DASHBOARDS)
    assert [uid for uid, n in uids.items() if n > 1] == []
    assert set(uids) >= EXPECTED_UIDS
    for dashboard in DASHBOARDS:
        assert dashboard.model.get("uid"), f"{dashboard.path.name} has no fixed uid"
        assert len(dashboard.uid) <= 40, f"{dashboard.path.name}: Grafana uids are at most 40 characters"
        # Provisioned dashboards get their database id from Grafana.
        assert dashboard.model.get("id") in (None, 0), f"{dashboard.path.name} carries a database id"


def test_titles_are_unique() -> None:
    titles = Counter(d.title for d in DASHBOARDS)
    assert [t for t, n in titles.items() if n > 1] == []


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=IDS)
def test_panel_ids_are_unique(dashboard: Dashboard) -> None:
    ids = Counter(panel.get("id") for panel in dashboard.panels())
    assert None not in ids, f"{dashboard.path.name}: a panel has no id"
    assert [i for i, n in ids.items() if n > 1] == [], f"{dashboard.path.name}: duplicate panel ids"


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=IDS)
def test_every_panel_has_a_title_and_a_description(dashboard: Dashboard) -> None:
    for panel in dashboard.panels():
        where = f"{dashboard.path.name} panel {panel.get('id')}"
        assert str(panel.get("title", "")).strip(), f"{where} has no title"
        description = str(panel.get("description", "")).strip()
        assert description, f"{where} ({panel.get('title')!r}) has no description"
        if panel.get("type") != "row":
            # What it shows and what to do when it looks wrong: more than a caption.
            assert len(description) >= 80, f"{where} ({panel.get('title')!r}): description too short"


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=IDS)
def test_panels_stay_on_the_grid(dashboard: Dashboard) -> None:
    for panel in dashboard.panels():
        pos = panel.get("gridPos", {})
        where = f"{dashboard.path.name} panel {panel.get('id')}"
        assert {"x", "y", "w", "h"} <= set(pos), f"{where} has no gridPos"
        assert pos["x"] >= 0, f"{where} starts left of the grid"
        assert pos["x"] + pos["w"] <= 24, f"{where} is wider than the grid"


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=IDS)
def test_every_query_panel_has_targets(dashboard: Dashboard) -> None:
    for panel in dashboard.panels():
        if panel.get("type") in ("row", "text", "alertlist", "dashlist", "news"):
            continue
        targets = [t for t in panel.get("targets", []) if not t.get("hide")]
        assert targets, f"{dashboard.path.name} panel {panel['id']} ({panel.get('title')!r}) queries nothing"
        ref_ids = Counter(t.get("refId") for t in targets)
        assert [r for r, n in ref_ids.items() if n > 1 or not r] == [], (
            f"{dashboard.path.name} panel {panel['id']}: refIds must be unique and set"
        )


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=IDS)
def test_every_datasource_is_provisioned(dashboard: Dashboard) -> None:
    provisioned = provisioned_datasources()
    for path, value in walk(dashboard.model):
        if not path.endswith(".datasource") or value is None:
            continue
        where = f"{dashboard.path.name} {path}"
        assert isinstance(value, Mapping), f"{where}: reference data sources by {{type, uid}}, not by name"
        uid = str(value.get("uid", ""))
        if uid in BUILTIN_DATASOURCE_UIDS:
            continue
        assert uid in provisioned, (
            f"{where}: data source uid {uid!r} is not provisioned ({sorted(provisioned)})"
        )
        assert value.get("type") == provisioned[uid], f"{where}: {uid!r} is a {provisioned[uid]} data source"


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=IDS)
def test_every_variable_used_is_defined(dashboard: Dashboard) -> None:
    defined = [v["name"] for v in dashboard.variables]
    assert len(defined) == len(set(defined)), f"{dashboard.path.name}: a variable is defined twice"
    for path, value in walk(dashboard.model):
        if not isinstance(value, str) or path.endswith(".description"):
            continue
        for name in used_variables(value):
            if name.startswith("__"):
                continue  # Grafana's own: $__rate_interval, $__range, ${__url_time_range}, ...
            assert name in defined, f"{dashboard.path.name} {path}: ${name} is not a template variable"


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=IDS)
def test_variables_only_depend_on_earlier_variables(dashboard: Dashboard) -> None:
    seen: set[str] = set()
    for variable in dashboard.variables:
        for name in used_variables(variable_query(variable)):
            if not name.startswith("__"):
                assert name in seen, (
                    f"{dashboard.path.name}: {variable['name']} uses ${name} defined after it"
                )
        seen.add(variable["name"])


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=IDS)
def test_defined_variables_are_used(dashboard: Dashboard) -> None:
    text = json.dumps({k: v for k, v in dashboard.model.items() if k != "templating"})
    text += json.dumps([variable_query(v) for v in dashboard.variables])
    used = used_variables(text)
    for variable in dashboard.variables:
        assert variable["name"] in used, f"{dashboard.path.name}: variable {variable['name']} is never used"


def test_latency_panels_carry_exemplars() -> None:
    latency = [
        q
        for q in panel_queries()
        if q.language == "promql"
        and "histogram_quantile" in q.expr
        and "http_server_request_duration_seconds_bucket" in q.expr
    ]
    assert latency, "no request latency panel"
    for query in latency:
        panel = next(
            p for d in DASHBOARDS if d.uid == query.dashboard for p in d.panels() if p["id"] == query.panel_id
        )
        target = next(t for t in panel["targets"] if t.get("refId") == query.ref_id)
        if panel.get("type") == "timeseries":
            assert target.get("exemplar") is True, f"{query.where}: latency target without exemplars"


def test_overview_has_a_log_panel_filtered_by_level() -> None:
    overview = next(d for d in DASHBOARDS if d.uid == "user-service-overview")
    log_panels = [p for p in overview.panels() if p.get("type") == "logs"]
    assert log_panels, "the overview has no logs panel"
    assert any('level=~"$level"' in t.get("expr", "") for p in log_panels for t in p["targets"])
