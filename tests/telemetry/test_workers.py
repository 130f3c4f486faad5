"""Metrics with several workers: a worker killed under load, the supervisor's restart, and expositions that
`promtool check metrics` finds clean (one worker, several, the relay's own)."""

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.service_process import ServiceProcess
from tests.support.workers import promtool_problems, run_dir, sample_of_file, worker_pids, writers
from user_service.infrastructure.db.database import Database

T = TypeVar("T")
POOL = {"db_client_connection_pool_name": "primary"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def wait_for(predicate: Callable[[], T | None], timeout: float = 60, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


def scrape(url: str) -> Samples:
    with httpx.Client() as fresh:  # a new connection, so either worker may answer
        response = fresh.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def posts_in_flight(samples: Samples) -> float:
    return value(samples, "http_server_active_requests", http_request_method="POST")


def pool_connections(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "db_client_connections")


def create(url: str, username: str) -> int:
    body = {"username": username, "first_name": "Multi", "last_name": "Process"}
    return httpx.post(f"{url}/users/", json=body, timeout=10).status_code


def two_workers(supervisor: int, gone: int | None = None) -> set[int] | None:
    pids = worker_pids(supervisor)
    return pids if len(pids) == 2 and gone not in pids else None


def slow_post(port: int) -> socket.socket:
    """A POST whose body never finishes: a request in flight for as long as the connection lives."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        f"POST /users/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{".encode()
    )
    return sock


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


@pytest.fixture
def slow_requests() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def test_a_worker_killed_under_load_leaves_the_exposition_right(
    database_url: str,
    broker_url: str,
    clean_db: Database,
    tmp_path: Path,
    slow_requests: list[socket.socket],
) -> None:
    env = {
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "OUTBOX_POLL_INTERVAL": "0.2",
        "HTTP_BODY_TIMEOUT": "120",
        "HTTP_BODY_MIN_RATE": "0",
    }
    with ServiceProcess(env, ("--workers", "2")) as service:
        folder = run_dir(tmp_path, service.pid)
        first = wait_for(lambda: two_workers(service.pid))
        # Both pools reported: each worker writes its pool once its lifespan has started, and a worker
        # may have a gauge file (a request in flight) before that.
        wait_for(
            lambda: value(scrape(service.url), "db_client_connection_max", **POOL) == 20,
            what="both workers' pools in the exposition",
        )
        for i in range(10):
            assert create(service.url, f"k{i}") == 201
        slow_requests.extend(slow_post(service.port) for _ in range(8))
        wait_for(lambda: posts_in_flight(scrape(service.url)) == 8, what="8 POSTs in flight")
        before = scrape(service.url)
        assert value(before, "db_client_connection_max", **POOL) == 20  # 10 for each worker's pool
        assert value(before, "user_events_committed_total", type="user.created") == 10
        busy = {
            pid: sample_of_file(
                folder / f"gauge_livesum_{pid}.db", "http_server_active_requests", http_request_method="POST"
            )
            for pid in first
        }
        victim = max(busy, key=lambda pid: busy[pid])
        assert busy[victim] > 0
        os.kill(victim, signal.SIGKILL)

        # The supervisor starts a replacement; the victim's connections are gone, the others still wait.
        now = wait_for(lambda: two_workers(service.pid, victim), what=f"a worker in place of {victim}")
        wait_for(lambda: now <= writers(folder, "gauge_livesum"))
        in_flight = wait_for(lambda: (n := sum(map(still_open, slow_requests))) < 8 and [n])[0]
        assert in_flight == 8 - busy[victim], busy

        def settled() -> Samples | None:
            samples = scrape(service.url)
            pools = value(samples, "db_client_connection_max", **POOL)
            return samples if posts_in_flight(samples) == in_flight and pools == 20 else None

        # In flight: what is running; the pools: the live workers' two.
        after = wait_for(settled, what=f"{in_flight} POSTs in flight and 2 pools of 10")
        assert victim not in writers(folder, "gauge_livesum")
        assert victim not in writers(folder, "gauge_livemax")
        live_pool = sum(
            sample_of_file(folder / f"gauge_livesum_{pid}.db", "db_client_connections", **POOL, **state)
            for pid in now
            for state in ({"db_client_connection_state": "used"}, {"db_client_connection_state": "idle"})
        )
        assert 0 < pool_connections(after) == live_pool, (now, writers(folder, "gauge_livesum"))
        # Counters neither go backwards (the victim's file stays) nor double (its successor starts at 0).
        assert value(after, "user_events_committed_total", type="user.created") == 10
        created = (
            "http_server_request_duration_seconds_count",
            {"http_request_method": "POST", "http_route": "/users", "http_response_status_code": "201"},
        )
        assert value(after, created[0], **created[1]) == 10
        for i in range(5):
            assert create(service.url, f"r{i}") == 201
        last = scrape(service.url)
        assert value(last, "user_events_committed_total", type="user.created") == 15
        assert value(last, created[0], **created[1]) == 15
        # One relay leads among the live workers; the victim's relay state left with it.
        wait_for(lambda: value(scrape(service.url), "outbox_relay_active") == 1, what="a relay leading")
        assert value(last, "user_service_build_info", version="1.0.0") == 1


def clean_exposition(url: str) -> str:
    with httpx.Client() as fresh:
        text = fresh.get(f"{url}/metrics", timeout=10).text
    assert promtool_problems(text) == ""
    assert "_created" not in text
    assert text.count("# HELP user_service_build_info ") == 1
    return text


@pytest.mark.parametrize("workers", ["1", "2"])
def test_promtool_finds_the_exposition_clean(
    database_url: str, broker_url: str, clean_db: Database, tmp_path: Path, workers: str
) -> None:
    env = {"DATABASE_URL": database_url, "BROKER_URL": broker_url, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with ServiceProcess(env, ("--workers", workers)) as service:
        assert create(service.url, "linted") == 201
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{service.url}/users/?limit=1")
        wait_for(lambda: "outbox_published_total" in clean_exposition(service.url))
        text = clean_exposition(service.url)
    for name in ("http_server_request_duration_seconds", "db_client_connection_max", "outbox_relay_active"):
        assert f"# TYPE {name} " in text
