"""One DATA_DIR, one owner: a second process refuses at once and never stops the first one's server;
start recovers from what a crash leaves behind (a stale postmaster.pid, an initdb that never finished),
and never throws away a data dir that holds data."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.service_process import ServiceProcess
from tests.cli.test_cli import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A DATA_DIR outside pytest's own temporary folder: the server runs as another user and must reach it,
    and pytest makes its folder private to this one again whenever a session starts."""
    parent = Path(tempfile.mkdtemp(prefix="user-service-data-dir-"))
    try:
        yield parent / "data"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def embedded(data_dir: Path) -> ServiceProcess:
    service = ServiceProcess({"DATA_DIR": str(data_dir)})
    for name in ("DATABASE_URL", "BROKER_URL"):
        service.env.pop(name, None)
    return service


@contextlib.contextmanager
def running(data_dir: Path) -> Iterator[ServiceProcess]:
    """The service on its embedded PostgreSQL in `data_dir`, stopped (SIGTERM, exit 0) after."""
    service = embedded(data_dir).start(timeout=120)  # a first start runs initdb: slow on a busy machine
    try:
        yield service
    finally:
        assert service.stop(timeout=30) == 0


def create(service: ServiceProcess, username: str) -> str:
    response = httpx.post(
        f"{service.url}/users/", json={"username": username, "first_name": "Da", "last_name": "Ta"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize("same_port", [False, True], ids=["another port", "the same port"])
def test_a_second_instance_refuses_and_the_first_keeps_serving(data_dir: Path, same_port: bool) -> None:
    with running(data_dir) as first:
        user_id = create(first, "first")
        port = str(first.port if same_port else first.port + 1)
        started = time.monotonic()
        second = run_cli("--port", port, DATA_DIR=str(data_dir), LOG_FORMAT="json")
        took = time.monotonic() - started
        lines = second.stderr.strip().splitlines()
        assert second.returncode != 0
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith(
            f"user-service: DATA_DIR {data_dir.resolve()} is in use by user-service pid "
        )
        assert f"serving on 127.0.0.1:{first.port}" in lines[0]
        assert "Traceback" not in second.stderr + second.stdout
        assert took < 15
        time.sleep(1)  # what a second process might break would show by now
        assert httpx.get(f"{first.url}/users/{user_id}").status_code == 200
        assert httpx.get(f"{first.url}/healthcheck/ready").status_code == 200


def test_a_stale_postmaster_pid_of_another_process_is_recovered(data_dir: Path) -> None:
    with running(data_dir) as service:
        user_id = create(service, "stale")
    pid_file = data_dir / "postgres" / "postmaster.pid"
    assert not pid_file.exists()
    # The server died without removing its file, and its PID now belongs to some other process.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        pid_file.write_text(
            f"{stranger.pid}\n{data_dir / 'postgres'}\n1700000000\n5432\n{data_dir}\n\n0 0\nready\n"
        )
        with running(data_dir) as service:
            assert httpx.get(f"{service.url}/users/{user_id}").status_code == 200
        assert stranger.poll() is None  # nobody touched the stranger
    finally:
        stranger.kill()
        stranger.wait()


def test_a_crash_during_the_first_initdb_is_recovered(data_dir: Path) -> None:
    service = embedded(data_dir)
    service.process = subprocess.Popen(
        [sys.executable, "-m", "user_service.main.cli"],
        env=service.env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not list(data_dir.glob("postgres.initdb-*/base")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(service.process.pid, signal.SIGKILL)  # the machine dies while initdb writes the scratch folder
    service.process.wait(10)
    assert not (data_dir / "postgres").exists(), "killed after initdb finished: nothing to recover"
    with running(data_dir) as again:
        create(again, "afresh")
    assert list(data_dir.glob("postgres.initdb-*")) == []


def test_a_data_dir_made_in_place_without_pg_control_is_made_again(data_dir: Path) -> None:
    half = data_dir / "postgres"
    (half / "base").mkdir(parents=True)
    (half / "PG_VERSION").write_text(
        "18\n"
    )  # what an interrupted initdb in place leaves: no global/pg_control
    with running(data_dir) as service:
        create(service, "remade")


def test_a_data_dir_that_holds_data_and_does_not_start_is_kept_with_one_line(data_dir: Path) -> None:
    with running(data_dir) as service:
        create(service, "precious")
    pgdata = data_dir / "postgres"
    (pgdata / "PG_VERSION").write_text("9\n")  # a data dir this server cannot read
    before = sorted(p.relative_to(pgdata) for p in pgdata.rglob("*") if p.name != "log")
    result = run_cli(DATA_DIR=str(data_dir))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"user-service: the PostgreSQL in {pgdata} did not start (")
    assert "its files are kept" in lines[0]
    assert sorted(p.relative_to(pgdata) for p in pgdata.rglob("*") if p.name != "log") == before
