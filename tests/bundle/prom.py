"""A real Prometheus for tests: started on a free port with its own storage, queried over its HTTP API,
always stopped.

    config = single_job_config(PROMETHEUS_CONFIG, "user-service", "http://127.0.0.1:5000/metrics")
    with run_prometheus(config, compose_prometheus_flags()) as prom:
        prom.wait_for_target_health("user-service", "up")
        exemplars = prom.wait_for_exemplars("http_server_request_duration_seconds_bucket")

or, in one call, `scrape_with_bundle_config(target_url, exemplars_of=...)`.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml

from loadtest.service_process import free_port
from tests.support.required import require_tool

from .support import PROMETHEUS_CONFIG, compose_config, load_yaml

T = TypeVar("T")

# Flags a test must not pass: the runner sets them itself.
_OWN_FLAGS = ("--config.file", "--storage.tsdb.path", "--web.listen-address")


def prometheus_binary() -> str:
    return require_tool("prometheus", "/usr/bin/prometheus", install="apt-get install prometheus")


def single_job_config(
    source: Path, job: str, target_url: str, *, scrape_interval: str = "1s", scrape_timeout: str = "1s"
) -> str:
    """`source` (a prometheus.yml) with only `job` left, scraping `target_url` (scheme://host:port/path).

    The job keeps its own settings (relabelling, honor labels, ...); its scheme, metrics path and target
    come from the URL. Rule files are dropped, and the interval is short so a test waits little.
    """
    config = load_yaml(source)
    jobs = [scrape for scrape in config.get("scrape_configs", []) if scrape["job_name"] == job]
    assert jobs, f"{source} has no scrape job {job!r}"
    scrape = dict(jobs[0])
    url = urllib.parse.urlsplit(target_url)
    assert url.scheme in ("http", "https"), f"not a target URL: {target_url!r}"
    assert url.netloc, f"not a target URL: {target_url!r}"
    scrape.pop("file_sd_configs", None)
    scrape.update(
        scheme=url.scheme,
        metrics_path=url.path or "/metrics",
        static_configs=[{"targets": [url.netloc]}],
        scrape_interval=scrape_interval,
        scrape_timeout=scrape_timeout,
    )
    if url.query:
        scrape["params"] = dict(urllib.parse.parse_qs(url.query).items())
    global_config = dict(config.get("global", {}))
    global_config.update(
        scrape_interval=scrape_interval, scrape_timeout=scrape_timeout, evaluation_interval="1s"
    )
    return yaml.safe_dump({"global": global_config, "scrape_configs": [scrape]}, sort_keys=False)


class PrometheusProcess:
    def __init__(self, base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, params: dict[str, str] | None = None, timeout: float = 5.0) -> Any:
        """GET an API path; the `data` of a success answer."""
        url = self.base_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
        assert body.get("status") == "success", body
        return body.get("data")

    def targets(self) -> list[dict[str, Any]]:
        data = self.get("/api/v1/targets", {"state": "active"})
        active: list[dict[str, Any]] = data["activeTargets"]
        return active

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", {"query": promql})
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_exemplars(self, promql: str, start: float, end: float) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query_exemplars", {"query": promql, "start": str(start), "end": str(end)})
        return list(data or [])

    def wait_until(self, what: str, probe: Callable[[], T | None], timeout: float = 15.0) -> T:
        """Polls `probe` until it returns something other than None (or fails after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited ({self.process.returncode}):\n{self.log_text()}")
            result = probe()
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}\n{self.log_text()[-3000:]}"
                )
            time.sleep(0.2)

    def wait_for_target_health(self, job: str, health: str = "up", timeout: float = 15.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            for target in self.targets():
                if target["labels"].get("job") == job and target["health"] == health:
                    return target
            return None

        return self.wait_until(f"a {health} target of job {job!r}", probe, timeout)

    def wait_for_exemplars(self, promql: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        started = time.time() - 3600

        def probe() -> list[dict[str, Any]] | None:
            found = self.query_exemplars(promql, started, time.time() + 60)
            return found if any(series.get("exemplars") for series in found) else None

        return self.wait_until(f"exemplars of {promql}", probe, timeout)


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def run_prometheus(
    config: str, flags: Sequence[str] = (), *, ready_timeout: float = 15.0
) -> Iterator[PrometheusProcess]:
    """Prometheus with `config` (YAML text) and extra command-line `flags`, on 127.0.0.1 and a free port.

    Waits until it is ready; stops it (SIGTERM, then SIGKILL) however the block ends.
    """
    binary = prometheus_binary()
    for flag in flags:
        assert not flag.startswith(_OWN_FLAGS), f"the runner sets {flag.split('=')[0]} itself"
    with tempfile.TemporaryDirectory(prefix="prometheus-") as tmp:
        workdir = Path(tmp)
        (workdir / "prometheus.yml").write_text(config, encoding="utf-8")
        log = workdir / "prometheus.log"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    *flags,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
            )
        prom = PrometheusProcess(base_url, process, log)
        try:
            prom.wait_until(
                "prometheus to be ready", lambda: True if _ready(base_url) else None, ready_timeout
            )
            yield prom
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def compose_prometheus_flags() -> list[str]:
    """The flags docker-compose.yml gives Prometheus, less those naming the container's own paths."""
    command = compose_config()["services"]["prometheus"]["command"]
    return [flag for flag in command if not flag.startswith(("--config.file", "--storage.tsdb.path"))]


def scrape_with_bundle_config(
    target_url: str, *, job: str = "user-service", exemplars_of: str | None = None, timeout: float = 15.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Runs Prometheus as the bundle does (its flags, `job` from observability/prometheus.yml) against
    `target_url`; returns the target once up and, if `exemplars_of` (a PromQL selector) is given, the
    exemplars stored for it once there are some."""
    config = single_job_config(PROMETHEUS_CONFIG, job, target_url)
    with run_prometheus(config, compose_prometheus_flags()) as prom:
        target = prom.wait_for_target_health(job, "up", timeout)
        exemplars = prom.wait_for_exemplars(exemplars_of, timeout) if exemplars_of else []
    return target, exemplars
