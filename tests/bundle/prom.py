"""Prometheus in the bundle tests: the installed binary (a skip without it, a failure in CI), the bundle's
prometheus.yml cut down to one job, and one scrape of a target as the bundle would run it.

    config = single_job_config(PROMETHEUS_CONFIG, "user-service", "http://127.0.0.1:5000/metrics")
    with run_prometheus(config, compose_prometheus_flags(), binary=prometheus_binary()) as prom:
        prom.wait_for_target_health("user-service", "up")

or, in one call, `scrape_with_bundle_config(target_url, exemplars_of=...)`. The runner itself is
observability/prom.py.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from observability.bundle import PROMETHEUS_CONFIG
from observability.prom import DEBIAN_BINARY, INSTALL, compose_prometheus_flags, local_config, run_prometheus
from tests.support.required import require_tool


def prometheus_binary() -> str:
    return require_tool("prometheus", DEBIAN_BINARY, install=INSTALL)


def single_job_config(source: Path, job: str, target_url: str) -> str:
    """`source` (a prometheus.yml) with only `job` left, scraping `target_url` (scheme://host:port/path).

    The job keeps its own settings (relabelling, honor labels, ...); its scheme, metrics path and target
    come from the URL. Rule files are dropped, and the interval is short so a test waits little.
    """
    url = urllib.parse.urlsplit(target_url)
    assert url.scheme in ("http", "https"), f"not a target URL: {target_url!r}"
    assert url.netloc, f"not a target URL: {target_url!r}"
    scrape: dict[str, Any] = {
        "scheme": url.scheme,
        "metrics_path": url.path or "/metrics",
        "static_configs": [{"targets": [url.netloc]}],
    }
    if url.query:
        scrape["params"] = dict(urllib.parse.parse_qs(url.query).items())
    return local_config({job: scrape}, source=source)


def scrape_with_bundle_config(
    target_url: str, *, job: str = "user-service", exemplars_of: str | None = None, timeout: float = 15.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Runs Prometheus as the bundle does (its flags, `job` from observability/prometheus.yml) against
    `target_url`; returns the target once up and, if `exemplars_of` (a PromQL selector) is given, the
    exemplars stored for it once there are some."""
    config = single_job_config(PROMETHEUS_CONFIG, job, target_url)
    with run_prometheus(config, compose_prometheus_flags(), binary=prometheus_binary()) as prom:
        target = prom.wait_for_target_health(job, "up", timeout)
        exemplars = prom.wait_for_exemplars(exemplars_of, timeout) if exemplars_of else []
    return target, exemplars
