"""A collector that never answers (a listening socket that reads nothing) or is not there (a closed port):
requests go on, the spans that do not fit are dropped and counted, the log says so once, and SIGTERM
still ends the process within SHUTDOWN_TIMEOUT + 2 s, the embedded PostgreSQL stopped."""

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.service_process import ServiceProcess, free_port
from tests.support.evidence import log_lines

SHUTDOWN_TIMEOUT = 2.0


class BlackHole:
    """Accepts connections on 127.0.0.1 and never reads or answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, name="black-hole", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()


@pytest.fixture(params=["black_hole", "closed_port"])
def dead_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "closed_port":
        yield f"http://127.0.0.1:{free_port()}"
        return
    hole = BlackHole()
    try:
        yield hole.url
    finally:
        hole.close()


def dead_collector_env(endpoint: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_BSP_MAX_QUEUE_SIZE": "32",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "TRACE_SAMPLE_RATIO": "1",
        "SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
    }


def dropped(client: httpx.Client) -> dict[str, float]:
    counts = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("otel_spans_dropped_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts


def wait_for_drops(
    client: httpx.Client, at_least: float, reason: str | None = None, timeout: float = 20
) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = dropped(client)
        if (counts[reason] if reason else sum(counts.values())) >= at_least:
            return counts
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} spans counted as dropped: {dropped(client)}")


def stop_within_deadline(process: ServiceProcess) -> float:
    started = time.monotonic()
    assert process.stop(timeout=SHUTDOWN_TIMEOUT + 10) == 0
    elapsed = time.monotonic() - started
    assert elapsed < SHUTDOWN_TIMEOUT + 2, f"SIGTERM to exit took {elapsed:.1f} s"
    return elapsed


def test_a_dead_collector_drops_and_counts_spans_and_stops_in_time(
    dead_endpoint: str, database_url: str
) -> None:
    with ServiceProcess({"DATABASE_URL": database_url, **dead_collector_env(dead_endpoint)}) as process:
        with httpx.Client(base_url=process.url) as client:
            for _ in range(150):
                assert client.get("/users/?limit=1").status_code == 200
            # 150 kept traces of three spans each, a queue of 32: most spans cannot be exported.
            counts = wait_for_drops(client, at_least=100)
            assert counts["buffer_full"] == 0
            assert counts["queue_full"] + counts["export_failed"] >= 100
            lines = log_lines(process.log_path)
        stop_within_deadline(process)
    warnings = [line["event"] for line in lines if line["level"] == "warning"]
    assert "trace export queue full; spans are dropped" in warnings
    # Once per minute each, not once per batch or per span.
    assert warnings.count("trace export queue full; spans are dropped") == 1
    assert warnings.count("trace export failing; spans are dropped") <= 1
    assert not [line for line in lines if line["logger"].startswith("opentelemetry")]


def test_a_failing_collector_is_told_once_per_interval(database_url: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with ServiceProcess({"DATABASE_URL": database_url, **dead_collector_env(endpoint)}) as process:
        with httpx.Client(base_url=process.url) as client:
            for _ in range(60):
                assert client.get("/users/?limit=1").status_code == 200
            wait_for_drops(client, at_least=8 * 3, reason="export_failed")  # three failed batches of 8
        lines = log_lines(process.log_path)
        stop_within_deadline(process)
    (failing,) = [line for line in lines if line["event"] == "trace export failing; spans are dropped"]
    assert failing["level"] == "warning"
    assert failing["exporter"] == "otlp http/protobuf"


def test_a_black_hole_collector_lets_sigterm_stop_the_embedded_postgresql() -> None:
    hole = BlackHole()
    parent = Path(tempfile.mkdtemp(prefix="user-service-dead-collector-"))
    try:
        env = {
            **dead_collector_env(hole.url),
            "OTEL_EXPORTER_OTLP_TIMEOUT": "30",
            "DATA_DIR": str(parent / "data"),
        }
        process = ServiceProcess(env)
        for name in ("DATABASE_URL", "BROKER_URL"):
            process.env.pop(name, None)
        process.start(timeout=90)
        try:
            with httpx.Client(base_url=process.url) as client:
                for _ in range(60):
                    assert client.get("/users/?limit=1").status_code == 200
                wait_for_drops(client, at_least=20)
            stop_within_deadline(process)
            output = process.output()
        finally:
            process.close()
        assert "embedded PostgreSQL stopped" in output
        assert not (parent / "data" / "postgres" / "postmaster.pid").exists()
    finally:
        hole.close()
        shutil.rmtree(parent, ignore_errors=True)
