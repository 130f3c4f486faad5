"""The Prometheus rules: valid for promtool, unit-tested, and every alert carries a severity, a summary,
a description with its live value and a runbook link to an existing section of docs/runbooks.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from observability.bundle import REPO
from tests.support.required import require_tool

from .queries import RULE_TESTS_DIR, RUNBOOKS, Rule, load_rules, rule_files

SEVERITIES = {"page", "ticket"}
RULES = load_rules()
ALERTS = [r for r in RULES if r.kind == "alert"]


def promtool() -> str:
    return require_tool("promtool", install="apt-get install prometheus")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def test_promtool_check_rules() -> None:
    files = [str(p.relative_to(REPO)) for p in rule_files()]
    assert files
    completed = run("check", "rules", *files)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_promtool_test_rules() -> None:
    files = sorted(str(p.relative_to(REPO)) for p in RULE_TESTS_DIR.glob("*.yml"))
    assert files
    completed = run("test", "rules", *files)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    assert RUNBOOKS.is_file(), f"{RUNBOOKS} is missing"
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", RUNBOOKS.read_text(encoding="utf-8"), re.M)
    return {github_anchor(h) for h in headings}


def test_alert_names_are_unique() -> None:
    names = [a.name for a in ALERTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("alert", ALERTS, ids=[a.name for a in ALERTS])
def test_alert_conventions(alert: Rule) -> None:
    assert alert.labels.get("severity") in SEVERITIES, f"{alert.where}: severity must be one of {SEVERITIES}"
    for key in ("summary", "description", "runbook"):
        assert alert.annotations.get(key, "").strip(), f"{alert.where}: no {key} annotation"
    assert "$value" in alert.annotations["description"], f"{alert.where}: the description shows no live value"
    link = alert.annotations["runbook"]
    path, _, anchor = link.partition("#")
    assert (REPO / path).resolve() == RUNBOOKS.resolve(), (
        f"{alert.where}: runbook {link!r} is not docs/runbooks.md"
    )
    assert anchor in runbook_anchors(), f"{alert.where}: docs/runbooks.md has no section #{anchor}"
    assert anchor == alert.name.lower(), f"{alert.where}: the runbook section is named after the alert"


def test_every_runbook_section_belongs_to_an_alert() -> None:
    text = RUNBOOKS.read_text(encoding="utf-8")
    sections = re.findall(r"^##\s+(\w+)\s*$", text, re.M)
    assert sorted(sections) == sorted(a.name for a in ALERTS)


def load_tests() -> list[dict[str, Any]]:
    out = []
    for path in sorted(RULE_TESTS_DIR.glob("*.yml")):
        out += yaml.safe_load(path.read_text(encoding="utf-8")).get("tests", [])
    return out


@pytest.mark.parametrize("alert", ALERTS, ids=[a.name for a in ALERTS])
def test_every_alert_is_tested_firing_and_quiet(alert: Rule) -> None:
    """Each alert has a unit test where it fires, with its labels and annotations spelled out, and one
    where it must stay quiet."""
    cases = [
        case
        for test in load_tests()
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alert.name
    ]
    firing = [c for c in cases if c.get("exp_alerts")]
    quiet = [c for c in cases if not c.get("exp_alerts")]
    assert firing, f"{alert.name}: no test where it fires"
    assert quiet, f"{alert.name}: no test where it stays quiet"
    for case in firing:
        for expected in case["exp_alerts"]:
            assert expected.get("exp_labels", {}).get("severity") == alert.labels["severity"]
            assert set(expected.get("exp_annotations", {})) >= {"summary", "description", "runbook"}


def test_every_recording_rule_is_tested() -> None:
    tested = " ".join(
        str(case.get("expr", "")) for test in load_tests() for case in test.get("promql_expr_test", [])
    )
    records = sorted({r.name for r in RULES if r.kind == "record"})
    assert [name for name in records if name not in tested] == []


def test_slo_windows_are_recorded() -> None:
    recorded = {(r.name, r.labels.get("slo")) for r in RULES if r.kind == "record"}
    for slo in ("availability", "latency"):
        for window in ("5m", "30m", "1h", "6h", "30d"):
            assert (f"slo:sli_error:ratio_rate{window}", slo) in recorded


def test_rule_tests_reference_existing_rule_files() -> None:
    for path in sorted(RULE_TESTS_DIR.glob("*.yml")):
        for rule_file in yaml.safe_load(path.read_text(encoding="utf-8")).get("rule_files", []):
            assert (path.parent / Path(rule_file)).is_file(), f"{path.name}: {rule_file} does not exist"
