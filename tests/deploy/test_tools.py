"""Every rendered object through the real validators: kubernetes-validate (the Kubernetes 1.32 schemas,
strict), the Prometheus Operator's own schemas (@kubernetes-models/prometheus-operator), and checkov.
Each is also run on a broken copy, so a validator that checks nothing would fail here."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .support import OVERLAYS, REPO, find, node_checks, one, rendered, tool, write_objects

KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
CHECKOV = "checkov==3.3.30"
KUBERNETES_VERSION = "1.32.0"
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


# --------------------------------------------------------------------------------------------------------
# kubernetes-validate
# --------------------------------------------------------------------------------------------------------
def kubernetes_validate(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    binary = tool("kubernetes-validate", KUBERNETES_VALIDATE)
    return subprocess.run(
        [binary, "--strict", "-k", KUBERNETES_VERSION, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_matches_the_kubernetes_schemas(overlay: str, tmp_path: Path) -> None:
    objects = [o for o in rendered(overlay) if o["kind"] not in OPERATOR_KINDS]
    result = kubernetes_validate(write_objects(objects, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.findall(r"^INFO .* passed for resource", result.stdout, re.MULTILINE)
    assert len(passed) == len(objects), result.stdout


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    api = copy.deepcopy(one(rendered("production"), "Deployment", "user-service-api"))
    api["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"httpGet": {"path": "/", "port": 1}}
    result = kubernetes_validate(write_objects([api], tmp_path))
    assert result.returncode != 0
    assert "livenesProbe" in result.stdout + result.stderr


# --------------------------------------------------------------------------------------------------------
# The Prometheus Operator's schemas
# --------------------------------------------------------------------------------------------------------
def operator_validate(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node, script = node_checks()
    result = subprocess.run(
        [node, str(script)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    results: list[dict[str, Any]] = json.loads(result.stdout)
    return results


def test_the_prometheus_operator_objects_are_valid() -> None:
    objects = rendered("production")
    results = operator_validate(objects)
    assert {(r["kind"], r["name"]) for r in results} == {
        (o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in OPERATOR_KINDS
    }
    assert {r["kind"] for r in results} == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert [r for r in results if r["error"]] == []


def test_the_operator_schemas_reject_broken_objects() -> None:
    objects = copy.deepcopy(rendered("production"))
    (monitor,) = find(objects, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    rule = one(objects, "PrometheusRule", "user-service")
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    errors = {r["kind"]: r["error"] for r in operator_validate(objects)}
    assert "interval" in (errors["ServiceMonitor"] or "")
    assert "expr" in (errors["PrometheusRule"] or "")


# --------------------------------------------------------------------------------------------------------
# checkov
# --------------------------------------------------------------------------------------------------------
def checkov(folder: Path) -> dict[str, Any]:
    binary = tool("checkov", CHECKOV)
    result = subprocess.run(
        [binary, "-d", str(folder), "--framework", "kubernetes", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO,
    )
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert isinstance(report, dict), report
    return report


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_finds_no_failed_check(overlay: str, tmp_path: Path) -> None:
    objects = rendered(overlay)
    write_objects(objects, tmp_path)
    report = checkov(tmp_path)
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"].get("failed_checks", [])
    ]
    assert failed == []
    assert report["summary"]["passed"] > 100
    assert report["summary"]["parsing_errors"] == 0
    # A skipped check carries the reason of the annotation that skips it.
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment", "")) > 30, check["check_id"]


def test_checkov_fails_a_writable_root_filesystem(tmp_path: Path) -> None:
    api = copy.deepcopy(one(rendered("production"), "Deployment", "user-service-api"))
    del api["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"]
    write_objects([api], tmp_path)
    failed = {c["check_id"] for c in checkov(tmp_path)["results"].get("failed_checks", [])}
    assert "CKV_K8S_22" in failed


def test_ci_installs_the_versions_these_tests_name() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    for pin in (KUBERNETES_VALIDATE, CHECKOV):
        assert re.search(rf"uv tool install --quiet (--python \S+ )?{re.escape(pin)}$", ci, re.MULTILINE), pin
    assert "npm ci --prefix deploy/kubernetes/checks" in ci
    lock = json.loads(
        (REPO / "deploy" / "kubernetes" / "checks" / "package-lock.json").read_text(encoding="utf-8")
    )
    assert lock["packages"]["node_modules/@kubernetes-models/prometheus-operator"]["version"].startswith("6.")
