"""A live run of the metrics side of the bundle: the real service (a subprocess, with its outbox relay
publishing to RabbitMQ), a real Prometheus scraping it with observability/prometheus.yml and the rules of
observability/rules/, and a short load of every kind of request the API answers.

    with live_run(env, load_seconds=20) as run:
        run.query('sum(rate(http_server_request_duration_seconds_count[30s]))', at=run.ended)

The Prometheus config is the bundle's, rewritten for a local run: `user-service` scrapes the service
subprocess, `prometheus` scrapes this Prometheus itself, `rabbitmq` scrapes RabbitMQ's Prometheus plugin
when one is given; the other jobs (Vector, Loki, Tempo, Grafana) are dropped, since none of them runs
here. Everything scrapes and evaluates every second so that a short run fills every panel.

`excluded_reason()` tells, for a dashboard query, which component exports the metrics it reads, and so
whether a live run can fill it (and if not, why).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loadtest.service_process import ServiceProcess
from loadtest.traffic import Outcome, send
from observability.prom import (
    PrometheusProcess,
    compose_prometheus_flags,
    instant_query,
    local_config,
    run_prometheus,
)

# RabbitMQ's rabbitmq_prometheus plugin, where a local RabbitMQ serves it (RABBITMQ_PROMETHEUS overrides).
RABBITMQ_PROMETHEUS = os.environ.get("RABBITMQ_PROMETHEUS", "127.0.0.1:15692")

# Components whose metrics the dashboards read besides the service's, by the prefix of their metric names.
# `up` and `scrape_*` are written by Prometheus for every target it scrapes.
COMPONENT_PREFIXES = {
    "rabbitmq_": "rabbitmq",
    "vector_": "vector",
    "loki_": "loki",
    "tempo_": "tempo",
    "traces_": "tempo",  # Tempo's metrics generator (span metrics, service graph), remote-written
    "grafana_": "grafana",
    "prometheus_": "prometheus",
    "scrape_": "prometheus",
    "up": "prometheus",
}

# Why a component's panels stay empty in a live run on this machine.
NOT_RUNNING = {
    "vector": "Vector does not run outside the compose bundle (no package for the test machines)",
    "loki": "Loki does not run outside the compose bundle (no package for the test machines)",
    "tempo": "Tempo (and its metrics generator, which writes traces_spanmetrics_*) does not run outside "
    "the compose bundle (no package for the test machines)",
    "grafana": "Grafana does not run outside the compose bundle",
    "rabbitmq": "RabbitMQ's Prometheus plugin (rabbitmq_prometheus) does not answer on "
    + RABBITMQ_PROMETHEUS,
}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def query_components(promql: str) -> frozenset[str]:
    """The components (other than the service) whose metrics a PromQL query reads."""
    bare = _MATCHERS.sub(" ", _GROUPINGS.sub(" ", _STRINGS.sub('""', promql)))
    found = set()
    for name in _IDENTIFIER.findall(bare):
        for prefix, component in COMPONENT_PREFIXES.items():
            if name == prefix or (prefix.endswith("_") and name.startswith(prefix)):
                found.add(component)
    return frozenset(found)


def reachable(address: str, timeout: float = 0.5) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def running_components(rabbitmq: bool) -> frozenset[str]:
    """What a live run scrapes besides the service: Prometheus itself, and RabbitMQ when it can."""
    return frozenset({"prometheus", "rabbitmq"} if rabbitmq else {"prometheus"})


def excluded_reason(promql: str, running: frozenset[str]) -> str | None:
    """Why a live run cannot fill this query (None: it reads only what runs)."""
    missing = sorted(query_components(promql) - running)
    return "; ".join(NOT_RUNNING[c] for c in missing) or None


# ------------------------------------------------------------------------------------------------------
# Prometheus, configured as the bundle's, for a local run
# ------------------------------------------------------------------------------------------------------


def live_prometheus_config(
    service_target: str,
    self_targets_file: Path,
    rabbitmq_target: str | None = None,
    interval: str = "1s",
) -> str:
    """observability/prometheus.yml for a local run: see the module's docstring.

    Prometheus' own address is only known once it listens, so its job reads it from `self_targets_file`
    (file service discovery), which the caller writes then.
    """
    jobs: dict[str, dict[str, Any]] = {
        "user-service": {"static_configs": [{"targets": [service_target]}]},
        "prometheus": {"file_sd_configs": [{"files": [str(self_targets_file)], "refresh_interval": "1s"}]},
    }
    if rabbitmq_target is not None:
        jobs["rabbitmq"] = {"static_configs": [{"targets": [rabbitmq_target]}]}
    return local_config(jobs, interval=interval, rules=True)


def write_targets(path: Path, targets: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": targets}]), encoding="utf-8")
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------------
# Load: one scenario, a generator of requests, run by a thread
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None


def scenario(seed: int) -> Generator[Call, Outcome, None]:
    """Users created, read, renamed, renamed again, listed and deleted, with the client errors a real
    API sees: unknown ids (404), invalid input (422), conflicts (409), unknown routes (404) and wrong
    methods (405). Each step receives the answer to the previous one."""
    rng = random.Random(seed)
    prefix = f"live{rng.getrandbits(32):08x}"
    step = 0
    while True:
        step += 1
        username = f"{prefix}_{step}"
        person = {"username": username, "first_name": "Ada", "last_name": "Lovelace"}
        created = yield Call("POST", "/users/", person)
        if created.status != 201:
            continue
        user_id = created.json()["id"]
        yield Call("GET", f"/users/{user_id}")
        yield Call("GET", f"/users/@{username}")
        yield Call("PUT", f"/users/{user_id}/username", {"username": f"{username}_r"})
        yield Call(
            "PUT",
            f"/users/{user_id}/full-name",
            {"first_name": "Ada", "last_name": "King", "middle_name": rng.choice(["Augusta", "Byron"])},
        )
        yield Call("GET", f"/users/?limit={rng.choice([10, 50, 100])}&order={rng.choice(['asc', 'desc'])}")
        yield Call("GET", f"/users/{uuid.uuid4()}")  # 404: no such user
        yield Call("POST", "/users/", {"username": "9lives", "first_name": "", "last_name": "X"})  # 422
        if step % 3 == 0:
            yield Call("GET", "/users/not-a-uuid")  # 422
            yield Call("POST", "/users/", {**person, "username": f"{username}_r"})  # 409: username taken
        if step % 2 == 0:
            yield Call("DELETE", f"/users/{user_id}")
            yield Call("DELETE", f"/users/{user_id}")  # 409: already deleted
        if step % 4 == 0:
            yield Call("GET", f"/no-such-route/{step}")  # 404, route "unmatched"
        if step % 5 == 0:
            yield Call("PATCH", "/users/")  # 405


@dataclass
class LoadStats:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def run_load(base_url: str, seconds: float, rate: float = 150.0, seed: int = 1) -> LoadStats:
    """Runs `scenario` against `base_url` for `seconds`, at most `rate` requests per second, in a thread."""
    stats = LoadStats()
    stop = threading.Event()

    async def drive() -> None:
        calls = scenario(seed)
        call = next(calls)
        pause = 1.0 / rate
        async with httpx.AsyncClient(base_url=base_url) as client:
            while not stop.is_set():
                outcome = await send(client, call.method, call.path, call.body, timeout=10)
                if outcome.status is None:
                    stats.errors[outcome.error or "?"] += 1
                    await asyncio.sleep(0.05)
                    continue
                stats.statuses[outcome.status] += 1
                call = calls.send(outcome)
                await asyncio.sleep(max(0.0, pause - outcome.elapsed))

    thread = threading.Thread(target=asyncio.run, args=(drive(),), name="live-load", daemon=True)
    thread.start()
    thread.join(seconds)
    stop.set()
    thread.join(15)
    return stats


# ------------------------------------------------------------------------------------------------------
# The whole run
# ------------------------------------------------------------------------------------------------------


@dataclass
class LiveRun:
    prom: PrometheusProcess
    service: ServiceProcess
    instance: str  # the `instance` label of the service's target
    load: LoadStats
    started: float  # wall clock, seconds since the epoch
    ended: float
    rabbitmq: bool

    @property
    def prom_url(self) -> str:
        return self.prom.base_url

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        return instant_query(self.prom.base_url, promql, self.ended if at is None else at)


def wait_until_broker_connected(service: ServiceProcess, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checks = httpx.get(f"{service.url}/healthcheck/ready", timeout=2).json().get("checks", {})
        if checks.get("broker") == "ok":
            return
        time.sleep(0.1)
    raise AssertionError(f"the service's relay did not connect to the broker within {timeout} s")


@contextmanager
def live_run(
    service_env: Mapping[str, str],
    load_seconds: float,
    *,
    rabbitmq_target: str | None = None,
    rate: float = 150.0,
    settle_seconds: float = 3.0,
) -> Iterator[LiveRun]:
    """The service (`service_env`: DATABASE_URL, BROKER_URL, ...) scraped by Prometheus while the load
    runs; yields once the load is over and Prometheus has scraped and evaluated the rules after it."""
    env = {"OUTBOX_POLL_INTERVAL": "0.2", **service_env}
    with (
        tempfile.TemporaryDirectory(prefix="live-sd-") as sd_dir,
        ServiceProcess(env) as service,
    ):
        targets_file = Path(sd_dir) / "prometheus.json"
        write_targets(targets_file, [])
        instance = f"127.0.0.1:{service.port}"
        config = live_prometheus_config(instance, targets_file, rabbitmq_target)
        with run_prometheus(config, compose_prometheus_flags()) as prom:
            write_targets(targets_file, [urllib.parse.urlsplit(prom.base_url).netloc])
            prom.wait_for_target_health("user-service", "up")
            prom.wait_for_target_health("prometheus", "up")
            if "BROKER_URL" in env:
                wait_until_broker_connected(service)
            time.sleep(2)  # a few scrapes of the idle service first: the graphs start at rest
            started = time.time()
            stats = run_load(service.url, load_seconds, rate=rate)
            ended = time.time()
            time.sleep(settle_seconds)  # the last scrapes and rule evaluations
            yield LiveRun(prom, service, instance, stats, started, ended, rabbitmq_target is not None)
