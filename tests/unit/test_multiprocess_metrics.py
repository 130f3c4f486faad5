"""The multiprocess bookkeeping: the files of dead processes, and a pid the kernel gave again."""

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from user_service.infrastructure.telemetry.metrics import sweep_dead_processes

WRITE = (
    "from prometheus_client import Counter, Gauge\n"
    "Gauge('http_server_active_requests', 'x', ['http_request_method'], multiprocess_mode='livesum')"
    ".labels('GET').inc(5)\n"
    "Counter('user_events_committed', 'x', ['type']).labels('user.created').inc(7)\n"
    "import os; print(os.getpid())\n"
)


def files_of_a_process_that_is_gone(folder: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", WRITE],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout)


def test_a_dead_process_keeps_its_totals_and_loses_its_live_gauges(tmp_path: Path) -> None:
    pid = files_of_a_process_that_is_gone(tmp_path)
    assert {f.name for f in tmp_path.iterdir()} == {f"gauge_livesum_{pid}.db", f"counter_{pid}.db"}
    assert sweep_dead_processes(str(tmp_path)) == {pid}
    assert {f.name for f in tmp_path.iterdir()} == {f"counter_{pid}.db"}
    assert sweep_dead_processes(str(tmp_path)) == {pid}  # again: nothing left to remove, no error


def test_a_live_process_keeps_its_files(tmp_path: Path) -> None:
    (tmp_path / f"gauge_livesum_{os.getpid()}.db").write_bytes(b"")
    assert sweep_dead_processes(str(tmp_path)) == set()
    assert (tmp_path / f"gauge_livesum_{os.getpid()}.db").exists()


def test_a_worker_given_a_dead_workers_pid_does_not_carry_on_its_gauges(tmp_path: Path) -> None:
    """The files of a dead process renamed to the next process's pid, as when the kernel reuses it."""
    pid = files_of_a_process_that_is_gone(tmp_path)
    script = (
        "import os, pathlib\n"
        f"for f in pathlib.Path({str(tmp_path)!r}).iterdir():\n"
        f"    f.rename(f.with_name(f.name.replace('_{pid}.db', f'_{{os.getpid()}}.db')))\n"
        "from user_service.infrastructure.telemetry import metrics\n"
        "metrics.HTTP_ACTIVE.labels('POST').inc()\n"
        "print(metrics.exposition(None)[0].decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(done.stdout)
        for s in family.samples
    }
    active = "http_server_active_requests"
    assert samples.get((active, (("http_request_method", "GET"),)), 0) == 0  # not the dead one's 5
    assert samples[(active, (("http_request_method", "POST"),))] == 1
    assert samples[("user_events_committed_total", (("type", "user.created"),))] == 7  # its total stays
