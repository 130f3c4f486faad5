"""observability/prometheus.yml: checked by promtool, wired to the compose services, and run for real: a
Prometheus with the `user-service` job scrapes an OpenMetrics histogram with an exemplar and stores it."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from observability.bundle import PROMETHEUS_CONFIG, RULES_DIR, compose_config, load_yaml
from observability.prom import compose_prometheus_flags
from tests.support.required import require_tool

from .prom import scrape_with_bundle_config
from .support import GRAFANA_DATASOURCES, bind_mount

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
METRIC = "http_server_request_duration_seconds"


def promtool() -> str:
    return require_tool("promtool", "/usr/bin/promtool", install="apt-get install prometheus")


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "check", "config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(PROMETHEUS_CONFIG)
    return data


def test_promtool_accepts_the_config() -> None:
    result = check_config(PROMETHEUS_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_config_with_the_repository_rules(
    config: dict[str, Any], tmp_path: Path
) -> None:
    """The same config with rule_files pointing at the folder compose mounts on /etc/prometheus/rules."""
    RULES_DIR.mkdir(exist_ok=True)
    config = dict(
        config, rule_files=[str(RULES_DIR / Path(pattern).name) for pattern in config["rule_files"]]
    )
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = check_config(copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scrape_jobs_and_their_targets(config: dict[str, Any]) -> None:
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "user-service": ["api:5000"],
        "rabbitmq": ["rabbitmq:15692"],
        "vector": ["vector:9598"],
        "otel-collector": ["otel-collector:8888"],
        "tempo": ["tempo:3200"],
        "loki": ["loki:3100"],
        "grafana": ["grafana:3000"],
        "prometheus": ["localhost:9090"],
    }
    services = compose_config()["services"]
    for target in (t for ts in targets.values() for t in ts):
        host = target.partition(":")[0]
        assert host == "localhost" or host in services, target


def test_rules_come_from_the_mounted_rules_folder(config: dict[str, Any]) -> None:
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    prometheus = compose_config()["services"]["prometheus"]
    assert bind_mount(prometheus, "observability/rules") == "/etc/prometheus/rules"
    assert bind_mount(prometheus, "observability/prometheus.yml") == "/etc/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_prometheus_stores_exemplars_and_accepts_remote_write() -> None:
    flags = compose_prometheus_flags()
    assert "--enable-feature=exemplar-storage" in flags
    assert "--web.enable-remote-write-receiver" in flags


def test_exemplars_are_read_by_the_name_grafana_links_to_tempo() -> None:
    datasources = {ds["uid"]: ds for ds in load_yaml(GRAFANA_DATASOURCES)["datasources"]}
    (destination,) = datasources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "trace_id"


# --------------------------------------------------------------------------------------------------------
# A real Prometheus
# --------------------------------------------------------------------------------------------------------
OPENMETRICS = f"""# HELP {METRIC} Duration of HTTP server requests.
# TYPE {METRIC} histogram
# UNIT {METRIC} seconds
{METRIC}_bucket{{http_route="/users/{{user_id}}",le="0.005"}} 1
{METRIC}_bucket{{http_route="/users/{{user_id}}",le="0.1"}} 3 # {{trace_id="{TRACE_ID}"}} 0.042
{METRIC}_bucket{{http_route="/users/{{user_id}}",le="+Inf"}} 4
{METRIC}_count{{http_route="/users/{{user_id}}"}} 4
{METRIC}_sum{{http_route="/users/{{user_id}}"}} 0.31
# EOF
"""
CLASSIC = "\n".join(line.split(" # ")[0] for line in OPENMETRICS.splitlines() if line != "# EOF") + "\n"


class _Metrics(BaseHTTPRequestHandler):
    """Serves /metrics like the service: OpenMetrics (with exemplars) when asked for it, else text 0.0.4."""

    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
            return
        if "application/openmetrics-text" in self.headers.get("Accept", ""):
            body, content_type = OPENMETRICS, "application/openmetrics-text; version=1.0.0; charset=utf-8"
        else:
            body, content_type = CLASSIC, "text/plain; version=0.0.4; charset=utf-8"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def metrics_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_real_prometheus_scrapes_the_job_and_stores_exemplars(metrics_url: str) -> None:
    target, exemplars = scrape_with_bundle_config(metrics_url, exemplars_of=f"{METRIC}_bucket")
    assert target["scrapeUrl"] == metrics_url
    assert target["labels"]["job"] == "user-service"
    stored = [(series["seriesLabels"], ex) for series in exemplars for ex in series["exemplars"]]
    assert stored, exemplars
    labels, exemplar = stored[0]
    assert labels["le"] == "0.1"
    assert labels["http_route"] == "/users/{user_id}"
    assert exemplar["labels"] == {"trace_id": TRACE_ID}
    assert float(exemplar["value"]) == pytest.approx(0.042)
