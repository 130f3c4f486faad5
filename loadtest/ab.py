"""Before and after, side by side: the service at a git revision against the service in this worktree, on one
database, taking turns shape by shape, so that a change's effect is a ratio from one run.

    uv run --group bench python loadtest/ab.py [--base HEAD] [--seconds 5] [--rounds 3] [--telemetry on,off]

The base is `git archive REV` unpacked under loadtest/results/tmp and run by this environment's Python with
its `service/` first on PYTHONPATH (so the dependencies are this worktree's). Both run with one worker,
telemetry on (spans exported over OTLP/HTTP to a local sink) and/or off; each measurement is wrk with 64
connections after a warm-up, and the order of base and candidate swaps every round; with --concurrent both
are loaded at once, each by its own wrk, so they share whatever else the machine does. Prints, per telemetry
setting and shape, the req/s of both in every round and the median of the per-round ratios after / before.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

from bench import (
    DEFAULT_DSN,
    HERE,
    SHAPES,
    Shape,
    Target,
    base_env,
    cleanup_on_exit,
    seed,
    seed_rows,
    wait_quiet,
    wrk,
)
from otlp_sink import OtlpSink
from scratch_db import create_database, drop_database, with_database
from service_process import ServiceProcess, free_port

ROOT = HERE.parent


def unpack(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "service"], capture_output=True, check=True
    )
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "service"


def run_one(
    target: Target, shape: Shape, args: argparse.Namespace, wrk_env: dict[str, str]
) -> dict[str, Any]:
    wrk(target, shape, args.warmup, wrk_env)
    return wrk(target, shape, args.seconds, wrk_env)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--base", default="HEAD")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--telemetry", default="on,off")
    parser.add_argument("--shapes", default="get_by_id,list_100,post_users")
    parser.add_argument(
        "--concurrent",
        action="store_true",
        help="load both at once (each its own wrk): they share the machine's noise, the ratio is of CPU cost",
    )
    parser.add_argument(
        "--after-cmd",
        help="run the candidate with this command instead (`{port}` is replaced), e.g. another server; "
        "the base is then this worktree's service too, unless --base is given",
    )
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for both")
    parser.add_argument(
        "--after-env",
        action="append",
        default=[],
        help="NAME=VALUE for the candidate only, e.g. the same code with one part of telemetry off",
    )
    args = parser.parse_args()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    tmp = HERE / "results" / "tmp" / f"ab-{stamp}"
    tmp.mkdir(parents=True)
    base_src = unpack(args.base, tmp / "base")
    rows = seed_rows(10_000)
    ids_file = tmp / "ids.txt"
    live = [str(r[0]) for r in rows if r[6] is None]
    ids_file.write_text("\n".join(random.Random(7).sample(live, 1000)) + "\n", encoding="ascii")
    cli = [sys.executable, "-m", "user_service.main.cli"]
    extra = dict(item.split("=", 1) for item in args.env)
    after_extra = dict(item.split("=", 1) for item in args.after_env)
    shapes = [s for s in SHAPES if s.key in args.shapes.split(",")]
    with cleanup_on_exit() as cleanups:
        database = f"ab_{stamp}"
        url = with_database(args.dsn, database)
        asyncio.run(create_database(args.dsn, database))
        cleanups.append(lambda: asyncio.run(drop_database(args.dsn, database)))
        subprocess.run(
            [*cli, "migrate"], env={**base_env(), "DATABASE_URL": url}, check=True, capture_output=True
        )
        asyncio.run(seed(url, rows))
        sink = OtlpSink()
        cleanups.append(sink.close)
        targets: dict[tuple[str, str], Target] = {}
        for telemetry in args.telemetry.split(","):
            for variant in ("before", "after"):
                env = {"WORKERS": "1", "LOG_FORMAT": "json", "DATABASE_URL": url, **extra}
                env["TELEMETRY_ENABLED"] = "true" if telemetry == "on" else "false"
                if telemetry == "on":
                    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
                if variant == "after":
                    env.update(after_extra)
                environ = base_env()
                if variant == "before" and not (args.after_cmd and args.base == "HEAD"):
                    environ["PYTHONPATH"] = str(base_src)
                target = Target(f"{variant}-{telemetry}", variant, port=free_port())
                command = [*cli, "serve", "--workers", "1"]
                server_args: tuple[str, ...] = ("--host", "127.0.0.1", "--port", str(target.port))
                if variant == "after" and args.after_cmd:
                    command = args.after_cmd.replace("{port}", str(target.port)).split()
                    server_args = ()
                target.process = ServiceProcess(
                    env,
                    server_args,
                    target.port,
                    command,
                    environ=environ,
                    log_path=tmp / f"{target.key}.log",
                    own_group=True,
                )
                cleanups.append(target.process.close)
                target.process.start(timeout=60)
                targets[variant, telemetry] = target
        wrk_env = {"IDS_FILE": str(ids_file)}
        for telemetry in args.telemetry.split(","):
            for shape in shapes:
                ratios, cells = [], []
                for rnd in range(args.rounds):
                    order = ("before", "after") if rnd % 2 == 0 else ("after", "before")
                    got = {}
                    if args.concurrent:
                        wait_quiet(max_wait=5)
                        with ThreadPoolExecutor(2) as pool:
                            runs = {
                                v: pool.submit(run_one, targets[v, telemetry], shape, args, wrk_env)
                                for v in order
                            }
                        got = {v: run.result() for v, run in runs.items()}
                    for variant in order if not args.concurrent else ():
                        wait_quiet(max_wait=5)
                        got[variant] = run_one(targets[variant, telemetry], shape, args, wrk_env)
                    ratios.append(got["after"]["rps"] / got["before"]["rps"])
                    bad = sum(r["non_2xx"] + r["socket_errors"] for r in got.values())
                    cells.append(
                        f"{got['before']['rps']:.0f}→{got['after']['rps']:.0f} "
                        f"(p99 {got['before']['p99_ms']:.0f}→{got['after']['p99_ms']:.0f}"
                        f"{', non-2xx ' if bad else ''}{bad or ''})"
                    )
                median = statistics.median(ratios)
                print(
                    f"ab: telemetry {telemetry:3} {shape.label:22} after/before {median:.2f}"
                    f"  [{', '.join(f'{r:.2f}' for r in ratios)}]  req/s {'; '.join(cells)}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
