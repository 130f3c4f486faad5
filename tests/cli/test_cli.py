"""The command line: one-line errors for bad settings, and the embedded PostgreSQL's whole life."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from loadtest.service_process import ServiceProcess


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    return subprocess.run(
        [sys.executable, "-m", "user_service.main.cli", *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "args", "names"),
    [
        ({"PORT": "http"}, (), "PORT"),
        ({}, ("--port", "70000"), "PORT"),
        ({"DATABASE_URL": "mysql://x@y/z"}, (), "DATABASE_URL"),
        ({"BROKER_URL": "http://x"}, (), "BROKER_URL"),
        ({"LOG_LEVEL": "loud"}, (), "LOG_LEVEL"),
        ({"DB_POOL_MAX_SIZE": "0"}, (), "DB_POOL_MAX_SIZE"),
        ({"ENVIRONMENT": "production", "DATABASE_URL": "postgresql://u:postgres@db/x"}, (), "DATABASE_URL"),
        ({"BROKER_URL": "amqp://"}, (), "BROKER_URL"),
        (
            {"PROMETHEUS_MULTIPROC_DIR": "/nonexistent/metrics"},
            ("--workers", "2"),
            "PROMETHEUS_MULTIPROC_DIR",
        ),
        ({"WEB_CONCURRENCY": "many"}, (), "WEB_CONCURRENCY"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(env: dict[str, str], args: tuple[str, ...], names: str) -> None:
    result = run_cli(*args, **env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("user-service: ")
    assert names in lines[0]
    assert "Traceback" not in result.stderr


def test_migrate_without_a_database_url_is_one_line() -> None:
    result = run_cli("migrate")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "user-service: migrate needs DATABASE_URL (the embedded database migrates itself on start)"
    )


def _embedded_service(data_dir: Path) -> ServiceProcess:
    service = ServiceProcess({"DATA_DIR": str(data_dir)})
    for name in ("DATABASE_URL", "BROKER_URL"):
        service.env.pop(name, None)
    return service


def test_serve_runs_on_embedded_postgres_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    pgdata = tmp_path / "data" / "postgres"
    service = _embedded_service(tmp_path / "data").start(timeout=60)
    try:
        body = {"username": "a", "first_name": "A", "last_name": "B"}
        created = httpx.post(f"{service.url}/users/", json=body)
        assert created.status_code == 201
        assert (pgdata / "postmaster.pid").exists()
        # A second life of the same process kind, killed without any cleanup, must not keep it running.
        service.signal(signal.SIGKILL)
        service.wait(10)
        service = _embedded_service(tmp_path / "data").start(timeout=60)
        again = httpx.get(f"{service.url}/users/{created.json()['id']}")
        assert again.status_code == 200  # the data survived in DATA_DIR
    finally:
        assert service.stop(timeout=30) == 0
    assert not (pgdata / "postmaster.pid").exists()


def test_a_serving_process_keeps_the_garbage_collector_off_the_request_path(database_url: str) -> None:
    """uvicorn's factory freezes the objects of startup and raises the young generation's threshold."""
    probe = (
        "import gc, json\n"
        "from user_service.main.app import app_from_environment, GC_GENERATION0_THRESHOLD as wanted\n"
        "before = gc.get_freeze_count()\n"
        "app_from_environment()\n"
        "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold()[0], wanted]))\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "BROKER_URL"}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**environ, "DATABASE_URL": database_url, "LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    before, frozen, threshold, wanted = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == 0
    assert frozen > 10_000  # the modules, the routes and the container are out of every collection
    assert threshold == wanted > 700  # above CPython's default
