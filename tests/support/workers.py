"""The worker processes of `user-service --workers N`, their metric files, and promtool on an exposition."""

import subprocess
from pathlib import Path

import psutil
from prometheus_client.multiprocess import MultiProcessCollector

from tests.support.required import require_tool


def worker_pids(supervisor: int) -> set[int]:
    """The supervisor's worker processes now (not multiprocessing's resource tracker)."""
    pids = set()
    for child in psutil.Process(supervisor).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def run_dir(given: Path, supervisor: int) -> Path:
    """The folder of this start's metric files, under the PROMETHEUS_MULTIPROC_DIR it was given."""
    return given / f"serve-{supervisor}"


def writers(folder: Path, kind: str = "histogram") -> set[int]:
    """The pids that wrote a `kind` file (counter, histogram, gauge_livesum, ...) into `folder`."""
    return {int(f.stem.rsplit("_", 1)[-1]) for f in folder.glob(f"{kind}_*.db")}


def sample_of_file(path: Path, name: str, **labels: str) -> float:
    """One sample's value as written by one process."""
    for family in MultiProcessCollector.merge([str(path)]):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def promtool_problems(exposition: str) -> str:
    """What `promtool check metrics` says of an exposition: empty when it is clean."""
    promtool = require_tool("promtool", "/usr/bin/promtool", install="apt-get install prometheus")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = (result.stdout + result.stderr).strip()
    return said if result.returncode == 0 else f"{said} (exit {result.returncode})"
