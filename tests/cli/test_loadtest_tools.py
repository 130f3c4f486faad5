"""The load-test tools refuse a wrong argument in one line, before they start anything."""

import subprocess
import sys
from pathlib import Path

import pytest

LOADTEST = Path(__file__).resolve().parents[2] / "loadtest"


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=LOADTEST, capture_output=True, text=True, timeout=60, check=False
    )


def profile_runs() -> set[Path]:
    return set((LOADTEST / "results" / "tmp").glob("profile-*"))


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--shapes", "get_by_id,by_id"], "--shapes: no shape by_id; the shapes are healthcheck, get_by_id"),
        (["--targets", "service,floor"], "--targets: no target floor; the targets are service, service-off"),
        (["--out", "/proc/no/such/folder"], "--out /proc/no/such/folder: No such file or directory"),
    ],
)
def test_profile_shapes_refuses_a_wrong_argument_before_it_starts(args: list[str], said: str) -> None:
    before = profile_runs()
    done = run_tool("profile_shapes.py", *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert said in done.stderr.strip().splitlines()[-1]
    assert profile_runs() == before  # no run folder, no database, no service


def test_inprocess_refuses_a_wrong_variant_before_it_starts() -> None:
    done = run_tool("inprocess.py", "on", "on-without-nothing")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "inprocess: no variant 'on-without-nothing': off, on, or on-without-PART[+PART...] of span, log, "
        "metrics, sql"
    ]
    assert done.stdout == ""  # nothing was measured, not even the valid variant before it


def test_telemetry_parts_refuses_an_unknown_part_and_its_loop_runs_each_variant() -> None:
    done = run_tool("telemetry_parts.py", "log", "nothing")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == "telemetry_parts: no part nothing: the parts are span, sql, log, metrics"
    for without in ([], ["span"], ["sql", "log", "metrics"]):
        loop = run_tool("telemetry_parts.py", "--child", "20", *without)  # what runs under callgrind
        assert loop.returncode == 0, loop.stderr
        assert loop.stderr == ""  # the access lines go to /dev/null, nothing fails on the way
