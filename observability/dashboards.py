"""The Grafana dashboards as the tools and the tests read them: their panels and template variables, and
every query with its variables replaced by sample values that keep it valid and runnable as is.

A multi-value variable becomes its "All" value (".*"), a custom one its "All" value, a text box its default,
Grafana's own `$__rate_interval` and friends a fixed duration.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from observability.bundle import DASHBOARDS_DIR

# The data source uids the provisioning defines (grafana/provisioning/datasources/), by type.
EXPECTED_DATASOURCES = {"prometheus": "prometheus", "loki": "loki", "tempo": "tempo"}


def duration(seconds: int) -> str:
    """A whole number of seconds as Grafana writes a duration: 1h, 1m, 30s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def builtin_values(rate_interval: str, interval_s: int, range_s: int) -> dict[str, str]:
    """Grafana's built-in variables for a panel whose query step is `interval_s` over `range_s` seconds."""
    return {
        "__rate_interval": rate_interval,
        "__interval": duration(interval_s),
        "__auto": duration(interval_s),
        "__range": duration(range_s),
        "__interval_ms": str(interval_s * 1000),
        "__range_s": str(range_s),
        "__range_ms": str(range_s * 1000),
    }


# Sample values of Grafana's built-in variables: a step of a minute over the last hour.
BUILTIN_VALUES = builtin_values("1m", 60, 3600)

# $name, ${name}, ${name:format}, [[name]], [[name:format]]
VARIABLE_USE = re.compile(
    r"\$\{(?P<braced>\w+)(?::[^}]*)?\}|\[\[(?P<bracketed>\w+)(?::[^\]]*)?\]\]|\$(?P<plain>\w+)"
)
LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Dashboard:
    path: Path
    model: dict[str, Any]

    @property
    def uid(self) -> str:
        return str(self.model.get("uid"))

    @property
    def title(self) -> str:
        return str(self.model.get("title"))

    @property
    def variables(self) -> list[dict[str, Any]]:
        return list(self.model.get("templating", {}).get("list", []))

    def panels(self) -> Iterator[dict[str, Any]]:
        """Every panel, rows and the panels inside collapsed rows included."""
        stack = list(reversed(self.model.get("panels", [])))
        while stack:
            panel = stack.pop()
            yield panel
            stack.extend(reversed(panel.get("panels", [])))


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboards() -> list[Dashboard]:
    return [Dashboard(path, json.loads(path.read_text(encoding="utf-8"))) for path in dashboard_files()]


def variable_query(variable: Mapping[str, Any]) -> str:
    query = variable.get("query", "")
    if isinstance(query, Mapping):
        query = query.get("query", "")
    return str(query or "")


def sample_values(dashboard: Dashboard) -> dict[str, str]:
    """A value for each of the dashboard's variables that keeps every query valid and broad."""
    values = dict(BUILTIN_VALUES)
    for variable in dashboard.variables:
        name = variable["name"]
        current = variable.get("current", {}).get("value")
        if isinstance(current, list):
            current = current[0] if current else None
        if variable.get("includeAll") and (current in (None, "$__all") or variable.get("multi")):
            values[name] = variable.get("allValue") or ".*"
        elif variable.get("type") == "textbox":
            values[name] = str(current if current is not None else variable_query(variable))
        elif variable.get("type") == "constant":
            values[name] = variable_query(variable)
        elif current not in (None, "$__all"):
            values[name] = str(current)
        else:
            options = [o.get("value") for o in variable.get("options", []) if o.get("value") != "$__all"]
            values[name] = str(options[0]) if options else ".*"
    return values


def used_variables(text: str) -> set[str]:
    return {m["braced"] or m["bracketed"] or m["plain"] for m in VARIABLE_USE.finditer(text)}


def render(text: str, values: Mapping[str, str]) -> str:
    """`text` with every template variable replaced by its value in `values` (unknown ones left alone)."""

    def replace(match: re.Match[str]) -> str:
        name = match["braced"] or match["bracketed"] or match["plain"]
        return values.get(name, match.group(0))

    return VARIABLE_USE.sub(replace, text)


def legend_labels(legend: str | None) -> frozenset[str]:
    return frozenset(LEGEND_LABEL.findall(legend or ""))


def datasource_type(dashboard: Dashboard, panel: Mapping[str, Any], target: Mapping[str, Any]) -> str:
    """The type of the data source a target queries: its own, else its panel's."""
    for holder in (target, panel):
        ds = holder.get("datasource")
        if isinstance(ds, Mapping) and ds.get("type"):
            return str(ds["type"])
        if isinstance(ds, Mapping) and ds.get("uid"):
            return {uid: kind for kind, uid in EXPECTED_DATASOURCES.items()}.get(str(ds["uid"]), "unknown")
    return "unknown"


_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def grafana_regex_value(value: str) -> str:
    """`value` as Grafana writes a selected value of a multi-value variable into a PromQL regex matcher:
    regex metacharacters escaped, backslashes doubled for the string literal."""
    return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))
