"""Benchmark: the service (telemetry on, telemetry off) against the floor, one machine, one run.

    uv run --group bench python loadtest/bench.py [--seconds 15] [--dsn postgresql://...] [--quick]

For each target it creates a fresh database on one PostgreSQL server (`--dsn`, default the local
postgresql://postgres@127.0.0.1:5432/postgres), migrates it with `user-service migrate`, and seeds the same
10,000 users into it. Then it starts the three targets, each one worker process:

* service      `user-service` as deployed, with its default settings (its default trace sampling policy
               included) and spans exported over OTLP/HTTP to a local sink
* service-off  the same with TELEMETRY_ENABLED=false (no tracing, metrics or access log)
* floor        loadtest/floor_app.py: raw ASGI over one asyncpg pool, the service's tables and SQL

and measures four shapes with wrk (64 connections, 2 threads, a warm-up first): GET /healthcheck,
GET /users/{id} of existing users, GET /users/?limit=100 and POST /users/ with distinct new users (last,
so the reads see identical tables). For every shape the targets run one after the other, in an order
that rotates from shape to shape; before each measurement the machine is given a moment to go quiet.

It prints the ratios telemetry on / off and service / floor per shape and checks them, and p99, against
the targets (TARGET_*): one line per target, met or missed, with the number.

Writes benchmark.md (a table with the machine, PostgreSQL version and date), benchmark.png (grouped bars)
and benchmark.json into loadtest/results/ (a --quick smoke run: loadtest/results/tmp/quick/). Every
process it starts is stopped and every database it created is dropped, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from otlp_sink import OtlpSink
from scratch_db import create_database, drop_database, with_database
from service_process import ServiceProcess, free_port

HERE = Path(__file__).resolve().parent
WRK_DIR = HERE / "wrk"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECTIONS, THREADS = 64, 2
# The targets each run is checked against: (what, the measure's key, the bound, at least (True) or at most).
TARGET_ON_OFF, TARGET_ON_FLOOR, TARGET_P99_MS = 0.85, 0.4, 250.0


@dataclass(frozen=True)
class Shape:
    key: str
    label: str
    path: str
    script: str


SHAPES = [
    Shape("healthcheck", "GET /healthcheck", "/healthcheck", "report.lua"),
    Shape("get_by_id", "GET /users/{id}", "/", "get_by_id.lua"),
    Shape("list_100", "GET /users/?limit=100", "/users/?limit=100", "report.lua"),
    Shape("post_users", "POST /users/", "/users/", "post_users.lua"),
]
REPORT_ORDER = ["post_users", "get_by_id", "list_100", "healthcheck"]


@dataclass
class Target:
    key: str
    label: str
    database: str = ""
    port: int = 0
    process: ServiceProcess | None = None
    rss_idle_kb: int = 0
    rss_after_kb: int = 0
    hwm_kb: int = 0
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


TARGETS = [
    Target("service", "service (telemetry on)"),
    Target("service-off", "service (telemetry off)"),
    Target("floor", "floor"),
]


class Interrupted(Exception):
    pass


def _on_signal(signum: int, _frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


# ---------------------------------------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------------------------------------


def uuid7_at(unix_ms: int, rng: random.Random) -> uuid.UUID:
    rand = rng.getrandbits(74)
    return uuid.UUID(int=unix_ms << 80 | 7 << 76 | (rand >> 62) << 64 | 2 << 62 | rand & ((1 << 62) - 1))


def seed_rows(count: int) -> list[tuple[Any, ...]]:
    """The same users for every target: UUIDv7 ids, one a second in the past, 5 % deleted."""
    rng = random.Random(20261126)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=count + 3600)
    rows = []
    for n in range(count):
        created = start + dt.timedelta(seconds=n)
        deleted = created + dt.timedelta(minutes=5) if rng.random() < 0.05 else None
        middle = rng.choice(["Lee", "Marie", None, None, None])
        rows.append(
            (
                uuid7_at(int(created.timestamp() * 1000), rng),
                f"seed_{n}",
                "Seed",
                f"User {n % 97}",
                middle,
                created,
                deleted,
            )
        )
    return rows


async def seed(url: str, rows: list[tuple[Any, ...]]) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.copy_records_to_table(
            "users",
            records=rows,
            columns=["id", "username", "first_name", "last_name", "middle_name", "created_at", "deleted_at"],
        )
        await conn.execute("VACUUM ANALYZE users")
        await conn.execute("VACUUM ANALYZE outbox")
    finally:
        await conn.close()


async def server_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return str(await conn.fetchval("SELECT version()"))
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------------------


def service_command(override: str | None) -> list[str]:
    if override:
        return override.split()
    beside = Path(sys.executable).parent / "user-service"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("user-service")
    if found:
        return [found]
    sys.exit("bench: no user-service executable; run with `uv run --group bench python loadtest/bench.py`")


def base_env() -> dict[str, str]:
    """The caller's environment without settings that would change what is measured."""
    drop = ("DATABASE_URL", "BROKER_URL", "TELEMETRY_ENABLED", "WORKERS", "PORT", "HOST", "LOG_LEVEL")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("OTEL_", "TRACE_"))}


def read_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in kB."""
    out = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (its threads included), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def wait_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (at most max_wait s) for half a second of a mostly idle CPU; return the busy share seen last."""
    deadline = time.monotonic() + max_wait
    busy_share = 1.0
    while True:
        b0, t0 = cpu_ticks()
        time.sleep(0.5)
        b1, t1 = cpu_ticks()
        busy_share = (b1 - b0) / max(1, t1 - t0)
        if busy_share < threshold or time.monotonic() > deadline:
            return busy_share


# ---------------------------------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------------------------------

RESULT = re.compile(r"WRK_RESULT (.*)")


def wrk(target: Target, shape: Shape, seconds: float, env: dict[str, str]) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_DIR / shape.script),
        f"http://127.0.0.1:{target.port}{shape.path}",
    ]
    run_env = {**os.environ, **env, "WRK_TAG": secrets.token_hex(4)}
    done = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    match = RESULT.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(
            f"wrk failed on {target.key} {shape.key}: {done.stdout[-500:]} {done.stderr[-500:]}"
        )
    values = {k: float(v) for k, v in (item.split("=") for item in match[1].split())}
    duration = values["duration_us"] / 1e6
    socket_errors = int(values["connect"] + values["read"] + values["write"] + values["timeout"])
    return {
        "rps": values["requests"] / duration if duration else 0.0,
        "requests": int(values["requests"]),
        "p50_ms": values["p50_ms"],
        "p90_ms": values["p90_ms"],
        "p99_ms": values["p99_ms"],
        "max_ms": values["max_ms"],
        "non_2xx": int(values["status"]),
        "socket_errors": socket_errors,
    }


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------


def cell(target: Target, shape: str) -> dict[str, Any]:
    """The median run (by req/s) of a target on a shape."""
    runs = sorted(target.results.get(shape, []), key=lambda r: r["rps"])
    return runs[len(runs) // 2] if runs else {}


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as fh:
        mem = f"{int(fh.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split(
        "\n"
    )[0]
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version.split(" [")[0],
    }


def against_targets() -> list[tuple[str, bool, str]]:
    """Each target of the benchmark: (what, met, the measured numbers), from the median runs.

    telemetry on / off and service (telemetry on) / floor, in req/s, on every shape; p99 of both service
    targets at CONNECTIONS connections on every shape."""
    by_key = {t.key: t for t in TARGETS}
    svc, off, floor = by_key["service"], by_key["service-off"], by_key["floor"]
    shapes = {s.key: s.label for s in SHAPES}
    keys = [k for k in REPORT_ORDER if cell(svc, k) and cell(off, k) and cell(floor, k)]

    def ratios(a: Target, b: Target) -> dict[str, float]:
        return {k: ratio(cell(a, k)["rps"], cell(b, k)["rps"]) for k in keys}

    out = []
    for what, values, bound in (
        (f"telemetry on / off >= {TARGET_ON_OFF}", ratios(svc, off), TARGET_ON_OFF),
        (f"service (telemetry on) / floor >= {TARGET_ON_FLOOR}", ratios(svc, floor), TARGET_ON_FLOOR),
    ):
        worst = min(values, key=lambda k: values[k]) if values else ""
        met = bool(values) and values[worst] >= bound
        detail = ", ".join(f"{shapes[k]} {v:.2f}" for k, v in values.items())
        out.append(
            (what, met, f"lowest {values.get(worst, float('nan')):.2f} ({shapes.get(worst, '-')}); {detail}")
        )
    p99 = {(t.label, k): cell(t, k)["p99_ms"] for t in (svc, off) for k in keys}
    worst_p99 = max(p99, key=lambda k: p99[k]) if p99 else ("-", "-")
    where = f"{worst_p99[0]}, {shapes.get(worst_p99[1], '-')}"
    out.append(
        (
            f"p99 <= {TARGET_P99_MS:.0f} ms at {CONNECTIONS} connections (service, telemetry on and off)",
            bool(p99) and p99[worst_p99] <= TARGET_P99_MS,
            f"highest {p99.get(worst_p99, float('nan')):.1f} ms ({where})",
        )
    )
    return out


def write_markdown(path: Path, info: dict[str, Any], sink: dict[str, int]) -> None:
    by_key = {t.key: t for t in TARGETS}
    svc, off, floor = by_key["service"], by_key["service-off"], by_key["floor"]
    shapes = {s.key: s for s in SHAPES}
    every = [r for t in TARGETS for runs in t.results.values() for r in runs]
    busy, runs = sum(r["busy_before"] > 0.5 for r in every), len(every)
    lines = [
        "# Benchmark: the service against the floor",
        "",
        f"Measured {info['date']} with `{info['command']}`.",
        "",
        f"- Machine: {info['machine']['nproc']} CPUs (`nproc`), {info['machine']['cpu']}, "
        f"{info['machine']['memory']} RAM, Linux {info['machine']['kernel']}; load average at start "
        f"{info['loadavg']}",
        f"- PostgreSQL: {info['postgres']}",
        f"- Python {info['machine']['python']}, {info['machine']['wrk']}; each target one worker process "
        "(uvicorn, uvloop, httptools), one asyncpg pool of at most 10 connections",
        f"- Load: wrk, {CONNECTIONS} connections, {THREADS} threads, {info['warmup']} s warm-up then "
        f"{info['seconds']} s measured per shape and target, {info['rounds']} round(s) "
        "(median shown); the targets take turns, in an order that rotates from shape to shape",
        f"- Data: a fresh database per target, migrated, {info['seed_users']:,} seeded users (5 % deleted); "
        "the reads run before the POSTs, on identical tables",
        "- Telemetry on: the service's default settings, its trace sampling policy included; spans exported "
        f"over OTLP/HTTP to a local sink ({sink['requests']} exports, "
        f"{sink['bytes'] / 1e6:.1f} MB); the broker relay is not running in any target",
        f"- Noise: {busy} of {runs} measurements started while the machine's CPU was more than half busy "
        "with other work (column *CPU busy before*)",
        "",
        "## Throughput and the ratio to the floor",
        "",
        "| shape | floor req/s | service, telemetry off req/s | service, telemetry on req/s "
        "| off / floor | on / floor | on / off |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in REPORT_ORDER:
        f, o, s = cell(floor, key), cell(off, key), cell(svc, key)
        if not (f and o and s):
            continue
        lines.append(
            f"| {shapes[key].label} | {f['rps']:.0f} | {o['rps']:.0f} | {s['rps']:.0f} "
            f"| {ratio(o['rps'], f['rps']):.2f} | {ratio(s['rps'], f['rps']):.2f} "
            f"| {ratio(s['rps'], o['rps']):.2f} |"
        )
    lines += ["", "## Against the targets", "", "| target | | measured |", "|---|---|---|"]
    lines += [
        f"| {what} | **{'met' if met else 'missed'}** | {detail} |" for what, met, detail in against_targets()
    ]
    lines += [
        "",
        "## Latency and errors",
        "",
        "| shape | target | req/s | p50 ms | p99 ms | non-2xx | socket errors | CPU µs / request "
        "| worker CPU | CPU busy before |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in REPORT_ORDER:
        for target in (floor, off, svc):
            c = cell(target, key)
            if c:
                lines.append(
                    f"| {shapes[key].label} | {target.label} | {c['rps']:.0f} | {c['p50_ms']:.1f} "
                    f"| {c['p99_ms']:.1f} | {c['non_2xx']} | {c['socket_errors']} "
                    f"| {c.get('cpu_us_per_request', 0):.0f} | {c.get('cpu_share', 0):.0%} "
                    f"| {c['busy_before']:.0%} |"
                )
    lines += [
        "",
        "## Memory of each process (RSS from /proc/PID/status)",
        "",
        "| target | after start, idle | peak (VmHWM) | after the load (VmRSS) |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {t.label} | {t.rss_idle_kb / 1024:.0f} MiB | {t.hwm_kb / 1024:.0f} MiB "
        f"| {t.rss_after_kb / 1024:.0f} MiB |"
        for t in (floor, off, svc)
    ]
    lines += [
        "",
        "## How to read it",
        "",
        "- The ratio service / floor is the measure: how much of what the hardware, PostgreSQL and the "
        "Python runtime allow the service delivers. Absolute req/s move from run to run and machine "
        "to machine; ratios from one run on one machine hold.",
        "- on / off is the price of telemetry (tracing with export, metrics, access log).",
        "- non-2xx must be 0: a shape that answers errors fast is not a result. Socket errors under load are "
        "usually timeouts (>10 s) and mean the target is saturated.",
        "- CPU µs / request is the worker's own CPU time (user and system, from /proc/PID/stat) over the "
        "measured seconds, divided by its requests: what a request costs the process, less moved by other "
        "work on the machine than req/s. Worker CPU near 100 % means the one worker was the bottleneck; "
        "well below, it waited on PostgreSQL or the client.",
        "- CPU busy before is the machine's CPU use just before the measurement; a high value means another "
        "workload ran on the machine and the row is less trustworthy.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_chart(path: Path, info: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = {t.key: t for t in TARGETS}
    labels = [next(s.label for s in SHAPES if s.key == k) for k in REPORT_ORDER]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.27
    colours = {"floor": "#9e9e9e", "service-off": "#4c72b0", "service": "#dd8452"}
    for i, key in enumerate(["floor", "service-off", "service"]):
        values = [cell(by_key[key], k).get("rps", 0) for k in REPORT_ORDER]
        xs = [x + (i - 1) * width for x in range(len(labels))]
        bars = left.bar(xs, values, width, label=by_key[key].label, color=colours[key])
        left.bar_label(bars, fmt="%.0f", fontsize=7)
    left.set_yscale("log")
    left.set_ylabel("requests / s (log scale)")
    left.set_title("Throughput")
    left.set_xticks(range(len(labels)), labels, rotation=15, fontsize=8)
    left.legend(fontsize=8)
    floor = by_key["floor"]
    for i, key in enumerate(["service-off", "service"]):
        values = [
            ratio(cell(by_key[key], k).get("rps", 0), cell(floor, k).get("rps", 0)) for k in REPORT_ORDER
        ]
        xs = [x + (i - 0.5) * width for x in range(len(labels))]
        bars = right.bar(xs, values, width, label=f"{by_key[key].label} / floor", color=colours[key])
        right.bar_label(bars, fmt="%.2f", fontsize=7)
    right.axhline(1.0, color="#555555", linewidth=0.8, linestyle="--")
    right.set_ylabel("service req/s ÷ floor req/s")
    right.set_title("Ratio to the floor (1.0 = as fast as the floor)")
    right.set_xticks(range(len(labels)), labels, rotation=15, fontsize=8)
    right.legend(fontsize=8)
    m = info["machine"]
    fig.suptitle(
        f"Users service vs floor: wrk {CONNECTIONS} connections, {info['seconds']:g} s per run; "
        f"{m['nproc']} CPUs ({m['cpu']}), {info['postgres'].split(' on ')[0]}, {info['date']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------


def rotated(items: list[Target], by: int) -> list[Target]:
    by %= len(items)
    return items[by:] + items[:by]


@contextlib.contextmanager
def cleanup_on_exit() -> Iterator[list[Any]]:
    """Run the registered cleanups (last first) on the way out, also on SIGTERM/SIGINT."""
    cleanups: list[Any] = []
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield cleanups
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as exc:
                print(f"bench: cleanup failed: {exc}", file=sys.stderr)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_DSN", DEFAULT_DSN),
        help="PostgreSQL server where the bench databases are made and dropped (from its postgres database)",
    )
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per shape and target")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds before each measurement")
    parser.add_argument("--rounds", type=int, default=1, help="repeat each measurement; report the median")
    parser.add_argument("--seed-users", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 s measured, 1 s warm-up")
    parser.add_argument(
        "--out", type=Path, help="output folder (default loadtest/results; --quick: results/tmp/quick)"
    )
    parser.add_argument(
        "--service-cmd", help="how to start the service (default: user-service beside python)"
    )
    parser.add_argument(
        "--no-otlp-sink", action="store_true", help="telemetry on, but spans are not exported"
    )
    parser.add_argument("--keep-databases", action="store_true")
    parser.add_argument(
        "--max-error-ratio",
        type=float,
        default=0.01,
        help="exit 1 when a measurement has more non-2xx answers and socket errors than this share (0.01)",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        help="only redraw benchmark.md and .png from a benchmark.json of an earlier run",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup = min(args.seconds, 3), 1
    args.out = args.out or (HERE / "results" / "tmp" / "quick" if args.quick else HERE / "results")
    return args


def migrate(service: list[str], url: str) -> None:
    """The service's own migrations, run on the database of `url`."""
    done = subprocess.run(
        [*service, "migrate"],
        env={**base_env(), "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"migrate failed for {url}: {done.stderr[-1000:]}")


def prepare_databases(
    args: argparse.Namespace, service: list[str], stamp: str, rows: list[tuple[Any, ...]], cleanups: list[Any]
) -> None:
    """A fresh database per target: created, migrated by the service, seeded with the same users."""
    for target in TARGETS:
        target.database = f"bench_{stamp}_{target.key.replace('-', '_')}"
        url = with_database(args.dsn, target.database)
        asyncio.run(create_database(args.dsn, target.database))
        if not args.keep_databases:
            cleanups.append(lambda name=target.database: asyncio.run(drop_database(args.dsn, name)))
        migrate(service, url)
        asyncio.run(seed(url, rows))
        print(f"bench: {target.database}: migrated, {len(rows):,} users seeded", flush=True)


def start_targets(
    args: argparse.Namespace, service: list[str], sink: OtlpSink | None, logs: Path, cleanups: list[Any]
) -> None:
    floor = [
        sys.executable,
        "-m",
        "uvicorn",
        "floor_app:app",
        "--app-dir",
        str(HERE),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--workers",
        "1",
    ]
    for target in TARGETS:
        url = with_database(args.dsn, target.database)
        env = {"WORKERS": "1", "LOG_FORMAT": "json"}
        if target.key == "floor":
            cmd = floor
            env["FLOOR_DATABASE_URL"] = url
        else:
            cmd = [*service, "--workers", "1"]
            env["DATABASE_URL"] = url
            env["TELEMETRY_ENABLED"] = "true" if target.key == "service" else "false"
            if target.key == "service" and sink is not None:
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
        target.port = free_port()
        target.process = ServiceProcess(
            env,
            ("--host", "127.0.0.1", "--port", str(target.port)),
            target.port,
            cmd,
            environ=base_env(),
            log_path=logs / f"{target.key}.log",
            own_group=True,
        )
        cleanups.append(target.process.close)
        pid = target.process.start(timeout=60).pid
        time.sleep(1)
        target.rss_idle_kb = read_status(pid).get("VmRSS", 0)
        print(f"bench: {target.key} serving on port {target.port} (pid {pid})", flush=True)


def measure(args: argparse.Namespace, ids_file: Path) -> None:
    """Every shape on every target; the order of the targets rotates from one turn to the next."""
    wrk_env = {"IDS_FILE": str(ids_file)}
    turn = 0
    for shape in SHAPES:
        for rnd in range(args.rounds):
            for target in rotated(TARGETS, turn):
                busy = wait_quiet(max_wait=10)
                wrk(target, shape, args.warmup, wrk_env)
                assert target.process is not None
                cpu_before = process_cpu_seconds(target.process.pid)
                result = wrk(target, shape, args.seconds, wrk_env)
                cpu = process_cpu_seconds(target.process.pid) - cpu_before
                result["cpu_us_per_request"] = cpu / result["requests"] * 1e6 if result["requests"] else 0.0
                result["cpu_share"] = cpu / args.seconds
                result["busy_before"] = busy
                result["round"] = rnd
                target.results.setdefault(shape.key, []).append(result)
                print(
                    f"bench: {shape.label:22} {target.key:12} {result['rps']:8.1f} req/s"
                    f"  p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:7.1f} ms"
                    f"  non-2xx {result['non_2xx']}  socket errors {result['socket_errors']}",
                    flush=True,
                )
            turn += 1
    for target in TARGETS:
        assert target.process is not None
        status = read_status(target.process.pid)
        target.rss_after_kb, target.hwm_kb = status.get("VmRSS", 0), status.get("VmHWM", 0)


def report(out: Path, raw: dict[str, Any], max_bad_ratio: float = 0.01) -> int:
    """Write benchmark.md/.png/.json from the raw results; 1 when a cell has too many non-2xx answers."""
    for target in TARGETS:
        data = raw["targets"][target.key]
        target.results = data["results"]
        target.rss_idle_kb, target.hwm_kb = data["rss_idle_kb"], data["rss_peak_kb"]
        target.rss_after_kb = data["rss_after_kb"]
    write_markdown(out / "benchmark.md", raw["info"], raw["otlp_sink"])
    write_chart(out / "benchmark.png", raw["info"])
    (out / "benchmark.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    print(f"bench: {out / 'benchmark.md'}, {out / 'benchmark.png'}")
    for what, met, detail in against_targets():
        print(f"bench: target {what}: {'met' if met else 'MISSED'}: {detail}")
    for target in TARGETS:
        for key in REPORT_ORDER:
            c = cell(target, key)
            if c.get("non_2xx"):
                print(
                    f"bench: {target.key} {key}: {c['non_2xx']} of {c['requests']} answers were not 2xx",
                    file=sys.stderr,
                )
    bad = [
        (t.key, k)
        for t in TARGETS
        for k in REPORT_ORDER
        if cell(t, k).get("non_2xx", 0) + cell(t, k).get("socket_errors", 0)
        > max_bad_ratio * max(1, cell(t, k).get("requests", 0))
    ]
    if bad:
        print(
            f"bench: more than {max_bad_ratio:.0%} errors in {bad}: those rows do not measure the work",
            file=sys.stderr,
        )
        return 1
    return 0


def main() -> int:
    args = parse_args()
    if args.from_json:
        raw = json.loads(args.from_json.read_text(encoding="utf-8"))
        args.out.mkdir(parents=True, exist_ok=True)
        return report(args.out, raw, args.max_error_ratio)
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not installed (apt-get install wrk)")
    service = service_command(args.service_cmd)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    logs = HERE / "results" / "tmp" / f"bench-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    ids_file = logs / "ids.txt"
    rows = seed_rows(args.seed_users)
    live = [str(r[0]) for r in rows if r[6] is None]
    ids_file.write_text(
        "\n".join(random.Random(7).sample(live, min(1000, len(live)))) + "\n", encoding="ascii"
    )
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["uv run --group bench python loadtest/bench.py", *sys.argv[1:]]),
        "machine": machine(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "seed_users": args.seed_users,
    }
    sink_stats = {"requests": 0, "bytes": 0}
    started = time.monotonic()
    with cleanup_on_exit() as cleanups:
        info["postgres"] = asyncio.run(server_version(args.dsn))
        print(f"bench: {info['postgres']}", flush=True)
        prepare_databases(args, service, stamp, rows, cleanups)
        sink = None if args.no_otlp_sink else OtlpSink()
        if sink is not None:
            cleanups.append(sink.close)
        start_targets(args, service, sink, logs, cleanups)
        measure(args, ids_file)
        if sink is not None:
            sink_stats = {"requests": sink.requests, "bytes": sink.bytes}
    info["elapsed_s"] = round(time.monotonic() - started)
    print(f"bench: measured in {info['elapsed_s']} s")
    raw = {
        "info": info,
        "otlp_sink": sink_stats,
        "targets": {
            t.key: {
                "rss_idle_kb": t.rss_idle_kb,
                "rss_peak_kb": t.hwm_kb,
                "rss_after_kb": t.rss_after_kb,
                "results": t.results,
            }
            for t in TARGETS
        },
    }
    return report(args.out, raw, args.max_error_ratio)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Interrupted as exc:
        sys.exit(f"bench: stopped by {exc}; every process and database it created is cleaned up")
    except RuntimeError as exc:
        sys.exit(f"bench: {exc}")
