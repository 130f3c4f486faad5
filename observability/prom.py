"""A real Prometheus for local runs: started on a free port with its own storage, queried over its HTTP API,
always stopped; and the queries of that API for any Prometheus.

    with run_prometheus(config, compose_prometheus_flags()) as prom:
        prom.wait_for_target_health("user-service", "up")
        instant_query(prom.base_url, 'sum(rate(http_server_request_duration_seconds_count[30s]))')
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml

from loadtest.service_process import answers, free_port
from observability.bundle import PROMETHEUS_CONFIG, RULES_DIR, compose_config, load_yaml

T = TypeVar("T")

# Flags a caller must not pass: the runner sets them itself.
_OWN_FLAGS = ("--config.file", "--storage.tsdb.path", "--web.listen-address")
INSTALL = "apt-get install prometheus"
DEBIAN_BINARY = "/usr/bin/prometheus"
# A scrape job's keys that name its targets (static_configs, file_sd_configs, dns_sd_configs, ...).
TARGETS = ("static_configs", "_sd_configs")


def prometheus_binary() -> str:
    """The path of the prometheus executable (on PATH or Debian's), or FileNotFoundError."""
    found = shutil.which("prometheus") or DEBIAN_BINARY
    if not os.access(found, os.X_OK):
        raise FileNotFoundError(f"prometheus is not installed ({INSTALL})")
    return found


def local_config(
    jobs: Mapping[str, Mapping[str, Any]],
    *,
    interval: str = "1s",
    rules: bool = False,
    source: Path = PROMETHEUS_CONFIG,
) -> str:
    """`source` (the bundle's prometheus.yml) for a run on this machine: only the `jobs` named, each with its
    own settings (relabelling, metrics path, ...) and, instead of its targets, those of `jobs[name]` (with
    any other settings there); every scrape and rule evaluation each `interval`; the rules of
    observability/rules/ if `rules`."""
    config = load_yaml(source)
    bundle = {scrape["job_name"]: scrape for scrape in config.get("scrape_configs", [])}
    missing = sorted(set(jobs) - set(bundle))
    assert not missing, f"{source} has no scrape job {missing}"
    timing = {"scrape_interval": interval, "scrape_timeout": interval}
    scrapes = []
    for job, override in jobs.items():
        own = {k: v for k, v in bundle[job].items() if not k.endswith(TARGETS)}
        scrapes.append({**own, **timing, **override})
    local = {"global": {**config.get("global", {}), **timing, "evaluation_interval": interval}}
    if rules:
        local["rule_files"] = [str(RULES_DIR / "*.yml")]
    return yaml.safe_dump({**local, "scrape_configs": scrapes}, sort_keys=False)


# ------------------------------------------------------------------------------------------------------
# The HTTP API
# ------------------------------------------------------------------------------------------------------


def api(
    prom_url: str, path: str, params: Mapping[str, str], *, timeout: float = 10, post: bool = True
) -> Any:
    """The `data` of a success answer of an API path (POSTed as a form, or a GET); a scalar result comes
    as a vector of one series without labels."""
    query = urllib.parse.urlencode(params)
    url = prom_url.rstrip("/") + path
    if post:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        request = urllib.request.Request(url, data=query.encode(), headers=headers)
    else:
        request = urllib.request.Request(url + ("?" + query if query else ""))
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{path} {params}: {body}")
    data = body.get("data")
    if isinstance(data, dict) and data.get("resultType") == "scalar":
        return {"resultType": "vector", "result": [{"metric": {}, "value": data["result"]}]}
    return data


def instant_query(prom_url: str, promql: str, at: float | None = None, timeout: float = 10) -> list[Any]:
    """`/api/v1/query`: the result vector (or matrix, a scalar as one series)."""
    params = {"query": promql}
    if at is not None:
        params["time"] = f"{at:.3f}"
    return list(api(prom_url, "/api/v1/query", params, timeout=timeout)["result"])


def range_query(
    prom_url: str, promql: str, start: float, end: float, step: float, *, timeout: float = 20
) -> list[Any]:
    params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    return list(api(prom_url, "/api/v1/query_range", params, timeout=timeout)["result"])


# ------------------------------------------------------------------------------------------------------
# A Prometheus process
# ------------------------------------------------------------------------------------------------------


class PrometheusProcess:
    def __init__(self, base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def targets(self) -> list[dict[str, Any]]:
        data = api(self.base_url, "/api/v1/targets", {"state": "active"}, timeout=5, post=False)
        return list(data["activeTargets"])

    def query_exemplars(self, promql: str, start: float, end: float) -> list[dict[str, Any]]:
        params = {"query": promql, "start": str(start), "end": str(end)}
        return list(api(self.base_url, "/api/v1/query_exemplars", params, timeout=5) or [])

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


@contextmanager
def run_prometheus(
    config: str, flags: Sequence[str] = (), *, binary: str | None = None, ready_timeout: float = 15.0
) -> Iterator[PrometheusProcess]:
    """Prometheus (`binary`, else the installed one) with `config` (YAML text) and extra command-line
    `flags`, on 127.0.0.1 and a free port. Waits until it is ready; stops it (SIGTERM, then SIGKILL)
    however the block ends."""
    binary = binary or prometheus_binary()
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
                "prometheus to be ready",
                lambda: True if answers(f"{base_url}/-/ready") else None,
                ready_timeout,
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
