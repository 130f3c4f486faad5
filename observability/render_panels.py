"""Render the Grafana dashboards' Prometheus panels from a Prometheus' data as PNGs, one per dashboard.

    uv run --group bench python -m observability.render_panels --prometheus http://127.0.0.1:9090 \\
        --out docs/img [--range 1h]
    uv run --group bench python -m observability.render_panels --run-load 40 --out docs/img

Run from the repository's root: it imports the tooling of observability/ and loadtest/ as packages.
With `--prometheus`, the panels show the last `--range` of that Prometheus (the compose bundle's, say).
With `--run-load SECONDS`, the script first does observability/live.py's run, as tests/dashboards/test_live.py
does: starts the
service (on an embedded PostgreSQL in a temporary folder unless `--database-url` is given, with
BROKER_URL so the outbox relay publishes), a real Prometheus with the bundle's config and rules scraping
it every second, and a load of SECONDS; then it renders that run.

Each dashboard becomes one PNG laid out on Grafana's 24-column grid: the timeseries, stat, gauge and
bar gauge panels, with their titles, legends (each target's legendFormat), units, thresholds and value
mappings. Template variables take their "All" value, as the dashboards open. Panels that query Loki or
Tempo are drawn as placeholders, log panels are left out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import itertools
import math
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl

from observability.bundle import REPO
from observability.dashboards import (
    LEGEND_LABEL,
    Dashboard,
    builtin_values,
    datasource_type,
    load_dashboards,
    render,
    sample_values,
)
from observability.prom import instant_query, range_query

mpl.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle, Wedge
from matplotlib.ticker import FixedLocator, Formatter, MaxNLocator

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
DRAWN = ("timeseries", "stat", "gauge", "bargauge")

# Grafana's dark theme and its "classic" palette.
BACKGROUND = "#111217"
PANEL = "#181b1f"
BORDER = "#2a2d33"
TEXT = "#ccccdc"
WEAK_TEXT = "#8e8e9a"
GRID = "#2c3235"
PALETTE = [
    "#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9", "#705DA0",
    "#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477",
]  # fmt: skip
NAMED_COLORS = {
    "green": "#73BF69",
    "red": "#F2495C",
    "orange": "#FF9830",
    "yellow": "#FADE2A",
    "blue": "#5794F2",
    "purple": "#B877D9",
    "text": TEXT,
    "transparent": PANEL,
}

# Figure geometry: inches per grid column and per grid row (Grafana: 24 columns, 30 px rows + 8 px gap).
COLUMN_IN = 0.8
ROW_IN = 0.4
HEADER_IN = 0.75
FOOTER_IN = 0.5
GAP_IN = 0.06


def color(name: str | None, fallback: str = TEXT) -> str:
    if not name:
        return fallback
    return NAMED_COLORS.get(name, name)


# ------------------------------------------------------------------------------------------------------
# Units, as Grafana formats them
# ------------------------------------------------------------------------------------------------------

_SI = ((1e12, " T"), (1e9, " B"), (1e6, " M"), (1e3, " K"))
_UNIT_SUFFIX = {"ops": " ops/s", "reqps": " req/s", "short": "", "none": "", "": ""}


def _auto_decimals(value: float) -> int:
    magnitude = abs(value)
    if magnitude == 0 or magnitude >= 100:
        return 0
    if magnitude >= 10:
        return 1
    if magnitude >= 1:
        return 2
    return min(6, 2 - math.floor(math.log10(magnitude)))


def _number(value: float, decimals: int | None) -> str:
    text = f"{value:.{_auto_decimals(value) if decimals is None else decimals}f}"
    if decimals is None and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_value(value: float | None, unit: str, decimals: int | None = None) -> str:  # noqa: PLR0911
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if unit == "percentunit":
        return _number(value * 100, decimals) + "%"
    if unit == "percent":
        return _number(value, decimals) + "%"
    if unit in ("s", "ms"):
        seconds = value / 1000 if unit == "ms" else value
        for scale, suffix in ((3600, " h"), (60, " min"), (1, " s"), (1e-3, " ms"), (1e-6, " µs")):
            if abs(seconds) >= scale or scale == 1e-6:
                return _number(seconds / scale, decimals) + suffix if seconds else "0 s"
    suffix = _UNIT_SUFFIX.get(unit, f" {unit}")
    for scale, si in _SI:
        if abs(value) >= scale:
            return _number(value / scale, decimals) + si.strip() + suffix
    return _number(value, decimals) + suffix


class UnitFormatter(Formatter):
    """Axis ticks in a Grafana unit, with as many decimals as the tick spacing needs."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.decimals: int | None = None

    def set_locs(self, locs: list[float]) -> None:
        super().set_locs(locs)
        finite = sorted(v for v in locs if math.isfinite(v))
        steps = [b - a for a, b in itertools.pairwise(finite) if b > a]
        self.decimals = None
        if steps and self.unit == "percentunit":
            self.decimals = max(0, -math.floor(math.log10(steps[0] * 100)))

    def __call__(self, x: float, pos: int | None = None) -> str:
        return format_value(x, self.unit, self.decimals)


# ------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    times: list[float]
    values: list[float]
    color: str = ""
    unit: str = ""
    right: bool = False

    def last(self) -> float | None:
        finite = [v for v in self.values if math.isfinite(v)]
        return finite[-1] if finite else None


@dataclass
class Window:
    """What every query is run over: [start, end] in steps, and Grafana's built-in variables for it."""

    start: float
    end: float
    step: float
    rate_interval: str

    @property
    def builtins(self) -> dict[str, str]:
        return builtin_values(
            self.rate_interval, max(1, round(self.step)), max(1, round(self.end - self.start))
        )


def display_name(legend: str, metric: Mapping[str, str], expr: str) -> str:
    if legend:
        return LEGEND_LABEL.sub(lambda m: metric.get(m.group(1), ""), legend).strip()
    labels = {k: v for k, v in metric.items() if k != "__name__"}
    if not metric:
        return " ".join(expr.split())
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric.get('__name__', '')}{{{inner}}}"


def fetch(prom_url: str, panel: Mapping[str, Any], values: Mapping[str, str], window: Window) -> list[Series]:
    out: list[Series] = []
    for target in panel.get("targets", []):
        expr = str(target.get("expr") or "")
        if target.get("hide") or not expr:
            continue
        promql = render(expr, values)
        legend = str(target.get("legendFormat") or "")
        if target.get("instant") and not target.get("range"):
            for item in instant_query(prom_url, promql, window.end):
                name = display_name(legend, item["metric"], expr)
                out.append(Series(name, [float(item["value"][0])], [float(item["value"][1])]))
            continue
        for item in range_query(prom_url, promql, window.start, window.end, window.step):
            times = [float(t) for t, _ in item["values"]]
            out.append(
                Series(
                    display_name(legend, item["metric"], expr), times, [float(v) for _, v in item["values"]]
                )
            )
    return out


def style(panel: Mapping[str, Any], series: list[Series]) -> None:
    """Colours, units and axes from the panel's field config and its overrides."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    for index, item in enumerate(series):
        item.color = PALETTE[index % len(PALETTE)]
        item.unit = str(defaults.get("unit", "short"))
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        pattern = str(matcher.get("options", ""))
        for item in series:
            kind = matcher.get("id")
            hit = (kind == "byName" and item.name == pattern) or (
                kind == "byRegexp" and re.fullmatch(pattern, item.name) is not None
            )
            if not hit:
                continue
            for prop in override.get("properties", []):
                if prop["id"] == "color" and prop["value"].get("mode") == "fixed":
                    item.color = color(prop["value"].get("fixedColor"))
                elif prop["id"] == "unit":
                    item.unit = str(prop["value"])
                elif prop["id"] == "custom.axisPlacement":
                    item.right = prop["value"] == "right"


def threshold_color(defaults: Mapping[str, Any], value: float | None) -> str:
    steps = defaults.get("thresholds", {}).get("steps", [])
    chosen = "green"
    for step in steps:
        if step.get("value") is None or (value is not None and value >= float(step["value"])):
            chosen = step.get("color", chosen)
    return color(chosen)


def mapped_text(defaults: Mapping[str, Any], value: float | None) -> str | None:
    for mapping in defaults.get("mappings", []):
        if mapping.get("type") == "value" and value is not None:
            for key, result in mapping.get("options", {}).items():
                if float(key) == value:
                    return str(result.get("text"))
    return None


# ------------------------------------------------------------------------------------------------------
# Drawing
# ------------------------------------------------------------------------------------------------------


@dataclass
class Box:
    """A panel's rectangle in figure fractions."""

    x: float
    y: float
    w: float
    h: float
    inch_w: float
    inch_h: float

    def inset(
        self, left: float, right: float, top: float, bottom: float
    ) -> tuple[float, float, float, float]:
        """[x, y, w, h] of the area `left`... inches inside the box."""
        fx, fy = self.w / self.inch_w, self.h / self.inch_h
        return (
            self.x + left * fx,
            self.y + bottom * fy,
            max(0.01, self.w - (left + right) * fx),
            max(0.01, self.h - (top + bottom) * fy),
        )


def frame(fig: Figure, box: Box, title: str) -> None:
    fig.patches.append(
        FancyBboxPatch(
            (box.x, box.y),
            box.w,
            box.h,
            boxstyle="round,pad=0,rounding_size=0.002",
            transform=fig.transFigure,
            facecolor=PANEL,
            edgecolor=BORDER,
            linewidth=0.8,
            zorder=-10,
        )
    )
    fy = box.h / box.inch_h
    fig.text(
        box.x + 0.08 * box.w / box.inch_w,
        box.y + box.h - 0.17 * fy,
        title,
        color=TEXT,
        fontsize=8.5,
        fontweight="bold",
        va="center",
        ha="left",
    )


def no_data(fig: Figure, box: Box, text: str = "No data") -> None:
    fig.text(
        box.x + box.w / 2,
        box.y + box.h / 2 - 0.1 * box.h / box.inch_h,
        text,
        color=WEAK_TEXT,
        fontsize=9,
        ha="center",
        va="center",
    )


def _axis_limits(target: Axes, defaults: Mapping[str, Any], flat: float | None, fixed: bool) -> None:
    """The y range of the lines alone (as Grafana: thresholds and fills do not stretch it), then the
    panel's min and max; a flat series gets a range around it."""
    bottom, top = target.get_ylim()
    if flat is not None:
        above = 0.005 if defaults.get("unit") == "percentunit" else 0.1  # a ratio of 1 stays near 100 %
        bottom, top = (0.0, 1.0) if flat == 0 else (flat - abs(flat) * 0.1, flat + abs(flat) * above)
    if fixed and defaults.get("min") is not None:
        bottom = float(defaults["min"])
    if fixed and defaults.get("max") is not None:
        top = float(defaults["max"]) * 1.04
    target.set_ylim(bottom, top if top > bottom else bottom + 1)


def _time_ticks(ax: Axes, window: Window, width_in: float) -> None:
    """Round times, none so close to an edge that its label runs into the y axis' labels."""
    locator = mdates.AutoDateLocator(minticks=2, maxticks=max(3, int(width_in / 1.1)), tz=dt.UTC)
    low, high = (
        mdates.date2num(dt.datetime.fromtimestamp(window.start, dt.UTC)),
        mdates.date2num(dt.datetime.fromtimestamp(window.end, dt.UTC)),
    )
    ax.set_xlim(low, high)
    margin = (high - low) * 0.06
    ticks = [
        t
        for t in locator.tick_values(mdates.num2date(low), mdates.num2date(high))
        if low + margin < t < high - margin
    ]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=dt.UTC))


def draw_timeseries(
    fig: Figure, box: Box, panel: Mapping[str, Any], series: list[Series], window: Window
) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    custom = defaults.get("custom", {})
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    fill = float(custom.get("fillOpacity", 0)) / 100
    width = float(custom.get("lineWidth", 1))
    has_right = any(s.right for s in series)
    # Legend under the plot: as many columns as fit, a row each 0.165 in.
    longest = max((len(s.name) for s in series), default=10)
    columns = max(1, min(len(series), int(box.inch_w / (0.35 + 0.065 * longest))))
    legend_rows = math.ceil(len(series) / columns)
    legend_in = 0.06 + 0.165 * legend_rows
    ax = fig.add_axes(box.inset(0.75, 0.7 if has_right else 0.15, 0.35, 0.25 + legend_in))
    axes = {False: ax, True: ax.twinx() if has_right else ax}
    # Lines first (stacked: each on top of the ones before), so that they alone set the y range.
    plotted: list[tuple[Series, list[dt.datetime], list[float], list[float] | None]] = []
    base: list[float] | None = None
    handles = []
    for item in series:
        times = [dt.datetime.fromtimestamp(t, dt.UTC) for t in item.times]
        values = item.values
        below = None
        if stacked:
            below = base if base is not None and len(base) == len(values) else [0.0] * len(values)
            values = [b + (v if math.isfinite(v) else 0.0) for b, v in zip(below, values, strict=True)]
            base = values
        (line,) = axes[item.right].plot(times, values, color=item.color, linewidth=width, label=item.name)
        handles.append(line)
        plotted.append((item, times, values, below))
    show_thresholds = custom.get("thresholdsStyle", {}).get("mode") in ("line", "dashed", "line+area")
    for axis_right, target in axes.items():
        if axis_right and target is ax:
            continue
        own = [
            v
            for item, _, values, _ in plotted
            if item.right == axis_right
            for v in values
            if math.isfinite(v)
        ]
        flat = own[0] if own and min(own) == max(own) else None
        _axis_limits(target, defaults, flat, fixed=not axis_right)
        unit = next((s.unit for s in series if s.right == axis_right), str(defaults.get("unit", "short")))
        target.yaxis.set_major_formatter(UnitFormatter(unit))
        nbins = max(2, int(box.inch_h * 1.4))
        target.yaxis.set_major_locator(
            MaxNLocator(nbins=nbins, min_n_ticks=2, integer=defaults.get("decimals") == 0)
        )
        target.tick_params(colors=WEAK_TEXT, labelsize=7, length=0)
        for spine in target.spines.values():
            spine.set_visible(False)
        if show_thresholds and not axis_right:
            for step in defaults.get("thresholds", {}).get("steps", []):
                if step.get("value") is not None:
                    target.axhline(
                        float(step["value"]),
                        color=color(step.get("color")),
                        linewidth=0.9,
                        linestyle=(0, (4, 3)),
                        alpha=0.9,
                    )
    for item, times, values, below in plotted:
        target = axes[item.right]
        low, high = target.get_ylim()
        floor = below if below is not None else [min(max(0.0, low), high)] * len(values)
        if fill or stacked:
            target.fill_between(
                times, floor, values, color=item.color, alpha=max(fill, 0.25 if stacked else 0), linewidth=0
            )
    ax.grid(True, color=GRID, linewidth=0.6)
    ax.set_facecolor(PANEL)
    _time_ticks(ax, window, box.inch_w)
    _legend(fig, box, handles, columns, legend_in)


def _legend(fig: Figure, box: Box, handles: list[Any], columns: int, height_in: float) -> None:
    """Grafana's list legend, under the plot."""
    area = box.inset(0.2, 0.1, box.inch_h - height_in, 0.02)
    fig.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(area[0], area[1] + area[3]),
        bbox_transform=fig.transFigure,
        ncol=columns,
        frameon=False,
        fontsize=7,
        labelcolor=TEXT,
        handlelength=1.2,
        handletextpad=0.4,
        columnspacing=1.2,
        borderaxespad=0,
        borderpad=0,
    )


def _value_texts(panel: Mapping[str, Any], series: list[Series]) -> list[tuple[str, str, str, Series]]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    decimals = defaults.get("decimals")
    out = []
    for item in series:
        value = item.last()
        text = mapped_text(defaults, value) or format_value(value, item.unit, decimals)
        out.append((item.name, text, threshold_color(defaults, value), item))
    return out


def draw_stat(fig: Figure, box: Box, panel: Mapping[str, Any], series: list[Series], window: Window) -> None:
    options = panel.get("options", {})
    color_mode = options.get("colorMode", "value")
    show_name = options.get("textMode") == "value_and_name" or (
        options.get("textMode", "auto") == "auto" and len(series) > 1
    )
    sparkline = options.get("graphMode") == "area"
    texts = _value_texts(panel, series)
    count = len(texts)
    cell_w = (box.inch_w - 0.2) / count
    body_h = box.inch_h - 0.4
    size = max(
        9.0, min(30.0, body_h * 20 * (0.75 if show_name else 1), cell_w * 72 / max(4, len(texts[0][1])) * 1.5)
    )
    for index, (name, text, value_color, item) in enumerate(texts):
        cell = box.inset(0.1 + index * cell_w, box.inch_w - 0.1 - (index + 1) * cell_w, 0.35, 0.08)
        fg = TEXT if color_mode in ("none", "background") else value_color
        if color_mode == "background":
            fig.patches.append(
                Rectangle(
                    (cell[0] + 0.002, cell[1]),
                    cell[2] - 0.004,
                    cell[3],
                    transform=fig.transFigure,
                    facecolor=value_color,
                    alpha=0.85,
                    zorder=-5,
                )
            )
            fg = "#ffffff"
        if sparkline and len(item.times) > 1:
            spark = fig.add_axes((cell[0], cell[1], cell[2], cell[3] * 0.45))
            finite = [v if math.isfinite(v) else float("nan") for v in item.values]
            spark.fill_between(
                item.times,
                min((v for v in finite if math.isfinite(v)), default=0),
                finite,
                color=value_color,
                alpha=0.18,
                linewidth=0,
            )
            spark.plot(item.times, finite, color=value_color, linewidth=1, alpha=0.8)
            spark.axis("off")
            spark.set_xlim(window.start, window.end)
        cx, cy = cell[0] + cell[2] / 2, cell[1] + cell[3] * (0.55 if sparkline else 0.45)
        if show_name:
            fig.text(
                cx,
                cell[1] + cell[3] * 0.86,
                name,
                color=fg,
                fontsize=max(7, size * 0.36),
                ha="center",
                va="center",
                zorder=3,
            )
            cy = cell[1] + cell[3] * 0.38
        fig.text(cx, cy, text, color=fg, fontsize=size, fontweight="bold", ha="center", va="center", zorder=3)


def draw_gauge(fig: Figure, box: Box, panel: Mapping[str, Any], series: list[Series], window: Window) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    low, high = float(defaults.get("min", 0)), float(defaults.get("max", 1))
    texts = _value_texts(panel, series)
    cell_w = (box.inch_w - 0.2) / len(texts)
    for index, (name, text, value_color, item) in enumerate(texts):
        ax = fig.add_axes(box.inset(0.1 + index * cell_w, box.inch_w - 0.1 - (index + 1) * cell_w, 0.4, 0.15))
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_xlim(-1.15, 1.15)
        ax.set_ylim(-0.35, 1.15)
        value = item.last() or 0.0
        share = min(1.0, max(0.0, (value - low) / (high - low or 1)))
        steps = defaults.get("thresholds", {}).get("steps", [])
        edges = [low] + [float(s["value"]) for s in steps[1:]] + [high]
        for step, a, b in zip(steps, edges, edges[1:], strict=False):  # threshold markers: the outer band
            start, stop = 180 - 180 * (b - low) / (high - low), 180 - 180 * (a - low) / (high - low)
            ax.add_patch(Wedge((0, 0), 1.05, start, stop, width=0.07, color=color(step.get("color"))))
        ax.add_patch(Wedge((0, 0), 0.95, 0, 180, width=0.28, color=GRID))
        ax.add_patch(Wedge((0, 0), 0.95, 180 - 180 * share, 180, width=0.28, color=value_color))
        ax.text(
            0,
            0.12,
            text,
            color=value_color,
            fontsize=min(26, box.inch_h * 6),
            fontweight="bold",
            ha="center",
            va="center",
        )
        ax.text(0, -0.22, name, color=WEAK_TEXT, fontsize=7, ha="center", va="center")


def draw_bargauge(
    fig: Figure, box: Box, panel: Mapping[str, Any], series: list[Series], window: Window
) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    texts = _value_texts(panel, series)
    values = [item.last() or 0.0 for *_, item in texts]
    top = max([float(defaults.get("max", 0)), *values]) or 1.0
    rows = len(texts)
    area = box.inset(0.15, 0.15, 0.38, 0.1)
    row_h = area[3] / rows
    for index, ((name, text, value_color, _), value) in enumerate(zip(texts, values, strict=True)):
        y = area[1] + area[3] - (index + 1) * row_h
        fig.text(area[0], y + row_h * 0.78, name, color=TEXT, fontsize=7, va="center", ha="left")
        bar_y, bar_h = y + row_h * 0.1, row_h * 0.5
        bar_w = area[2] * 0.82
        fig.patches.append(
            Rectangle((area[0], bar_y), bar_w, bar_h, transform=fig.transFigure, facecolor=GRID, zorder=1)
        )
        fig.patches.append(
            Rectangle(
                (area[0], bar_y),
                bar_w * value / top,
                bar_h,
                transform=fig.transFigure,
                facecolor=value_color,
                zorder=2,
            )
        )
        fig.text(
            area[0] + area[2],
            bar_y + bar_h / 2,
            text,
            color=value_color,
            fontsize=9,
            fontweight="bold",
            va="center",
            ha="right",
        )


DRAW: dict[str, Callable[[Figure, Box, Mapping[str, Any], list[Series], Window], None]] = {
    "timeseries": draw_timeseries,
    "stat": draw_stat,
    "gauge": draw_gauge,
    "bargauge": draw_bargauge,
}


# ------------------------------------------------------------------------------------------------------
# Layout: Grafana's grid, with the panels that are not drawn taken out and the rest moved up
# ------------------------------------------------------------------------------------------------------


@dataclass
class Placed:
    panel: dict[str, Any]
    x: int
    y: int
    w: int
    h: int
    kind: str  # "row", "panel" or "placeholder"
    note: str = ""


def layout(dashboard: Dashboard) -> tuple[list[Placed], list[str]]:
    """The panels to draw at their grid positions, and the titles of those left out."""
    items: list[Placed] = []
    left_out: list[str] = []
    for panel in dashboard.model.get("panels", []):  # rows are expanded in these dashboards
        pos = panel.get("gridPos", {})
        place = Placed(panel, pos["x"], pos["y"], pos["w"], pos["h"], "panel")
        kinds = {datasource_type(dashboard, panel, t) for t in panel.get("targets", [])}
        if panel.get("type") == "row":
            place.kind = "row"
        elif panel.get("type") not in DRAWN:
            left_out.append(f"{panel.get('title')} ({panel.get('type')})")
            continue
        elif kinds != {"prometheus"}:
            place.kind = "placeholder"
            place.note = (
                " and ".join(sorted(k.capitalize() for k in kinds - {"prometheus"})) + " query: not drawn"
            )
        items.append(place)
    # A row with nothing under it goes; then everything floats up, as Grafana's grid does.
    kept: list[Placed] = []
    for index, item in enumerate(items):
        if item.kind == "row":
            following = next((i for i in items[index + 1 :] if i.kind == "row"), None)
            under = [
                i for i in items[index + 1 :] if i.kind != "row" and (following is None or i.y < following.y)
            ]
            if not under:
                continue
        kept.append(item)
    heights = [0] * 24
    for item in sorted(kept, key=lambda i: (i.y, i.x)):
        item.y = max(heights[item.x : item.x + item.w])
        for column in range(item.x, item.x + item.w):
            heights[column] = item.y + item.h
    return kept, left_out


# ------------------------------------------------------------------------------------------------------
# One dashboard, one PNG
# ------------------------------------------------------------------------------------------------------


def render_dashboard(
    dashboard: Dashboard, prom_url: str, window: Window, out: Path, *, source: str, note: str = ""
) -> Path:
    placed, left_out = layout(dashboard)
    grid_h = max(i.y + i.h for i in placed)
    width_in = 24 * COLUMN_IN
    height_in = HEADER_IN + grid_h * ROW_IN + FOOTER_IN
    fig = plt.figure(figsize=(width_in, height_in), facecolor=BACKGROUND)
    values = {**sample_values(dashboard), **window.builtins}
    start = dt.datetime.fromtimestamp(window.start, dt.UTC)
    end = dt.datetime.fromtimestamp(window.end, dt.UTC)
    fig.text(
        0.2 / width_in,
        1 - 0.28 / height_in,
        dashboard.title,
        color=TEXT,
        fontsize=14,
        fontweight="bold",
        va="center",
    )
    variables = ", ".join(f"{v['name']} = All" for v in dashboard.variables if v.get("includeAll"))
    fig.text(
        0.2 / width_in,
        1 - 0.56 / height_in,
        f"{start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC   ·   {source}   ·   rate interval "
        f"{window.rate_interval}" + (f"   ·   {variables}" if variables else ""),
        color=WEAK_TEXT,
        fontsize=8,
        va="center",
    )
    for item in placed:
        x = item.x * COLUMN_IN + GAP_IN
        top = HEADER_IN + item.y * ROW_IN + GAP_IN
        w = item.w * COLUMN_IN - 2 * GAP_IN
        h = item.h * ROW_IN - 2 * GAP_IN
        box = Box(x / width_in, 1 - (top + h) / height_in, w / width_in, h / height_in, w, h)
        if item.kind == "row":
            fig.text(
                box.x,
                box.y + box.h / 2,
                str(item.panel.get("title", "")),
                color=TEXT,
                fontsize=10,
                fontweight="bold",
                va="center",
            )
            continue
        frame(fig, box, str(item.panel.get("title", "")))
        if item.kind == "placeholder":
            no_data(fig, box, item.note)
            continue
        panel = item.panel
        series = fetch(prom_url, panel, values, window)
        style(panel, series)
        if not series or all(s.last() is None for s in series):
            no_data(fig, box)
            continue
        DRAW[str(panel["type"])](fig, box, panel, series, window)
    footer = [line for line in (note, "Not drawn: " + "; ".join(left_out) if left_out else "") if line]
    for index, line in enumerate(reversed(footer)):
        fig.text(
            0.2 / width_in,
            (0.15 + 0.18 * index) / height_in,
            line,
            color=WEAK_TEXT,
            fontsize=7.5,
            va="center",
        )
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{png_name(dashboard)}.png"
    save_small(fig, path)
    plt.close(fig)
    return path


def png_name(dashboard: Dashboard) -> str:
    return dashboard.uid.removeprefix("user-service-")


def save_small(fig: Figure, path: Path, dpi: int = 80) -> None:
    """A PNG with a 256-colour palette: a third of the size, and the same to the eye for flat charts."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    buffer.seek(0)
    image = (
        Image.open(buffer)
        .convert("RGB")
        .quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    )
    image.save(path, format="PNG", optimize=True)


# ------------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 15m, 1h)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    return float(match[1]) * scale


def parse_time(text: str) -> float:
    """Seconds since the epoch, or an ISO 8601 time (UTC unless it names its offset)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def render_all(
    prom_url: str, window: Window, out: Path, *, source: str, only: Sequence[str] = (), note: str = ""
) -> list[Path]:
    paths = []
    for dashboard in load_dashboards():
        if only and dashboard.uid not in only and png_name(dashboard) not in only:
            continue
        path = render_dashboard(dashboard, prom_url, window, out, source=source, note=note)
        print(f"{path}  ({path.stat().st_size // 1024} KB)")
        paths.append(path)
    return paths


@dataclass
class Options:
    prometheus: str | None
    out: Path
    run_load: float | None
    range_: float
    end: float | None
    step: float | None
    rate_interval: str | None
    database_url: str | None
    broker_url: str
    dashboards: list[str] = field(default_factory=list)


def options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prometheus", metavar="URL", help="render from this Prometheus")
    source.add_argument(
        "--run-load",
        metavar="SECONDS",
        type=float,
        help="start the service, Prometheus and a load of SECONDS, then render that run",
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="folder of the PNGs")
    parser.add_argument(
        "--range",
        dest="range_",
        type=parse_duration,
        default="1h",
        help="with --prometheus: the time range, ending now (default 1h)",
    )
    parser.add_argument(
        "--end", type=parse_time, help="with --prometheus: the end of the range (default: now)"
    )
    parser.add_argument("--step", type=parse_duration, help="query resolution (default: range / 240)")
    parser.add_argument("--rate-interval", help="$__rate_interval (default: 1m; 10s with --run-load)")
    parser.add_argument("--database-url", help="with --run-load: a migrated database (default: embedded)")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="with --run-load: RabbitMQ")
    parser.add_argument(
        "--dashboard",
        dest="dashboards",
        action="append",
        default=[],
        help="only this dashboard (uid or PNG name); repeatable",
    )
    args = parser.parse_args(argv)
    return Options(**vars(args))


def main(argv: Sequence[str] | None = None) -> int:
    opts = options(argv)
    if opts.prometheus:
        end = opts.end or time.time()
        start = end - opts.range_
        step = opts.step or max(1.0, opts.range_ / 240)
        window = Window(start, end, step, opts.rate_interval or "1m")
        render_all(
            opts.prometheus, window, opts.out, source=f"Prometheus {opts.prometheus}", only=opts.dashboards
        )
        return 0
    from observability.live import NOT_RUNNING, RABBITMQ_PROMETHEUS, live_run, reachable

    assert opts.run_load is not None
    with tempfile.TemporaryDirectory(prefix="render-panels-") as data_dir:
        env = {"BROKER_URL": opts.broker_url, "LOG_LEVEL": "warning"}
        env |= {"DATABASE_URL": opts.database_url} if opts.database_url else {"DATA_DIR": data_dir}
        rabbitmq = RABBITMQ_PROMETHEUS if reachable(RABBITMQ_PROMETHEUS) else None
        print(f"running the service, Prometheus and {opts.run_load:g} s of load ...", flush=True)
        with live_run(env, opts.run_load, rabbitmq_target=rabbitmq) as run:
            print(f"{run.load.requests} requests, by status {dict(sorted(run.load.statuses.items()))}")
            window = Window(run.started - 2, run.ended + 2, opts.step or 1.0, opts.rate_interval or "10s")
            source = f"live run: {opts.run_load:g} s of load, scraped every 1 s"
            absent = [
                name for name in ("rabbitmq", "vector", "loki", "tempo") if name != "rabbitmq" or not rabbitmq
            ]
            note = (
                "No data is expected where a panel reads a component this run does not scrape: "
                + ", ".join(
                    {"rabbitmq": "RabbitMQ (Prometheus plugin)"}.get(n, n.capitalize()) for n in absent
                )
                + "."
            )
            assert set(absent) <= set(NOT_RUNNING)
            render_all(run.prom_url, window, opts.out, source=source, only=opts.dashboards, note=note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
