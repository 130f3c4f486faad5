"""`user-service relay` alone: its own /metrics and /healthcheck on RELAY_METRICS_PORT, with the relay's state
and what it published, clean by `promtool check metrics`; a broker it cannot reach reads 0."""

import os
import socket
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.service_process import CLI, ServiceProcess, free_port
from tests.support.workers import promtool_problems
from user_service.infrastructure.db.database import Database

pytestmark = pytest.mark.broker
T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    raise AssertionError("timed out")


def relay(env: dict[str, str]) -> ServiceProcess:
    """The relay command, started once its metrics port answers /healthcheck."""
    port = free_port()
    return ServiceProcess({**env, "RELAY_METRICS_PORT": str(port)}, ("relay",), port=port)


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def test_the_relay_serves_its_metrics_on_a_port_of_its_own(
    database_url: str, broker_url: str, clean_db: Database
) -> None:
    env = {"DATABASE_URL": database_url, "BROKER_URL": broker_url, "OUTBOX_POLL_INTERVAL": "0.2"}
    with relay(env) as process:
        wait_for(lambda: samples(process.url).get(("outbox_relay_active", ())) == 1)
        assert samples(process.url)[("outbox_broker_connected", ())] == 1
        async with clean_db.connection() as conn:
            await conn.execute(
                "INSERT INTO outbox (id, type, aggregate_id, payload) "
                "VALUES (gen_random_uuid(), 'user.created', gen_random_uuid(), '{}'::jsonb)"
            )
        published = ("outbox_published_total", (("type", "user.created"),))
        wait_for(lambda: samples(process.url).get(published) == 1)
        text = httpx.get(f"{process.url}/metrics").text
        assert promtool_problems(text) == ""
        assert "_created" not in text
        assert text.count("# HELP user_service_build_info ") == 1
        openmetrics = httpx.get(f"{process.url}/metrics", headers={"accept": "application/openmetrics-text"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")
        assert httpx.get(f"{process.url}/healthcheck").json() == {"status": "ok"}
        assert httpx.get(f"{process.url}/users/").status_code == 404
        assert httpx.post(f"{process.url}/metrics").status_code == 405


def test_a_relay_that_cannot_reach_the_broker_says_so(database_url: str, clean_db: Database) -> None:
    env = {"DATABASE_URL": database_url, "BROKER_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/"}
    with relay(env) as process:
        time.sleep(1)  # a few failed connects
        now = samples(process.url)
        assert now[("outbox_broker_connected", ())] == 0
        assert now[("outbox_relay_active", ())] == 0


def test_port_zero_serves_no_metrics(database_url: str, broker_url: str, clean_db: Database) -> None:
    env = {"DATABASE_URL": database_url, "BROKER_URL": broker_url, "RELAY_METRICS_PORT": "0"}
    process = ServiceProcess(env, ("relay",))
    try:
        with pytest.raises(TimeoutError):  # nothing answers on any port: start() waits for /healthcheck
            process.start(timeout=3)
        wait_for(lambda: "outbox relay is active" in process.output())
        assert "metrics endpoint listening" not in process.output()
        assert process.stop() == 0
    finally:
        process.close()


def test_a_metrics_port_in_use_stops_the_relay_with_one_line(database_url: str, broker_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "BROKER_URL": broker_url,
            "RELAY_METRICS_PORT": str(port),
        }
        done = subprocess.run(
            [*CLI, "relay"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"user-service: cannot serve the relay's metrics on 127.0.0.1:{port}:")
    )
    assert "Traceback" not in done.stderr
