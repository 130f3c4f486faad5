"""Where a request's time goes: py-spy samples one worker under wrk, shape by shape, and sorts every sample
into the layer of the request path it was in.

    uv run --group bench python loadtest/profile_shapes.py [--seconds 10] [--targets service,service-off]

Like loadtest/bench.py it makes a fresh database per target, migrated and seeded with the same users,
runs the service with telemetry on (its defaults, spans exported over OTLP/HTTP to a local sink) and with
TELEMETRY_ENABLED=false, and for each shape runs wrk (64 connections) while
`py-spy record --format raw --nonblocking` samples the worker. Needs py-spy (`pip install py-spy`) and
the right to ptrace the worker (root, or kernel.yama.ptrace_scope=0).

Each sample goes to the first layer its stack matches, from the innermost frame out (LAYERS), so a sample in
asyncpg called by the handler counts as asyncpg, and one in the handler's own code as the handler. Writes
loadtest/results/profile.md (the breakdown per target and shape) and, per target and shape, the breakdown and
the 40 heaviest innermost frames with their share (results/profile-frames.txt); the raw py-spy output stays
in results/tmp/.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import random
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from bench import (
    CONNECTIONS,
    DEFAULT_DSN,
    HERE,
    SHAPES,
    THREADS,
    WRK_DIR,
    base_env,
    cleanup_on_exit,
    seed,
    seed_rows,
    service_command,
    wait_quiet,
)
from otlp_sink import OtlpSink
from scratch_db import create_database, drop_database, with_database
from service_process import ServiceProcess, free_port

# (layer, pattern on a frame "function (file:line)"); the first layer that matches a frame, innermost frame
# first, takes the sample.
LAYERS: list[tuple[str, re.Pattern[str]]] = [
    (
        "telemetry: export",
        re.compile(r"opentelemetry/(exporter|proto|sdk/trace/export)|google/protobuf|requests/|urllib3/"),
    ),
    (
        "telemetry: spans",
        re.compile(
            r"opentelemetry/|server_span\.py|telemetry/sql\.py|telemetry/tracing\.py|"
            r"outcome_sampling|sampling\.py"
        ),
    ),
    ("telemetry: metrics", re.compile(r"prometheus_client/|request_metrics\.py|telemetry/metrics\.py")),
    ("telemetry: logging", re.compile(r"structlog/|access_log\.py|telemetry/logging\.py|/logging/")),
    ("JSON", re.compile(r"orjson|presentation/http/json\.py")),
    ("asyncpg", re.compile(r"asyncpg/")),
    ("dishka injection", re.compile(r"dishka/|presentation/http/injection\.py|main/ioc\.py")),
    ("FastAPI validation", re.compile(r"pydantic|fastapi/_compat|fastapi/dependencies")),
    ("FastAPI/Starlette routing", re.compile(r"fastapi/|starlette/|media_types\.py|problems\.py")),
    (
        "middleware",
        re.compile(
            r"presentation/http/(middleware|headers|paths|request_rules|body_limit|liveness|websocket)\.py"
        ),
    ),
    ("handler (application, db, read models)", re.compile(r"user_service/")),
    ("server/protocol", re.compile(r"uvicorn/|httptools|presentation/http/server\.py|h11")),
    ("event loop", re.compile(r"uvloop|asyncio/")),
    ("gc", re.compile(r"^gc|garbage")),
]
OTHER = "other"
LINE = re.compile(r"^(.*) (\d+)$")


def classify(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for layer, pattern in LAYERS:
            if pattern.search(frame):
                return layer
    return OTHER


def read_raw(path: Path) -> collections.Counter[str]:
    stacks: collections.Counter[str] = collections.Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = LINE.match(line)
        if match:
            stacks[match[1]] += int(match[2])
    return stacks


def breakdown(stacks: collections.Counter[str]) -> dict[str, float]:
    total = sum(stacks.values()) or 1
    layers: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        layers[classify(stack)] += count
    return {layer: count / total for layer, count in layers.most_common()}


def leaves(stacks: collections.Counter[str], top: int = 40) -> list[tuple[float, str]]:
    """The heaviest innermost frames (self time), with the layer they count for."""
    total = sum(stacks.values()) or 1
    own: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        own[stack.split(";")[-1]] += count
    return [(count / total, frame) for frame, count in own.most_common(top)]


TARGETS = ("service", "service-off")  # telemetry on (its defaults) and off


def run_wrk(port: int, shape_script: str, path: str, seconds: int, ids_file: Path) -> str:
    cmd = [
        "wrk",
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "-s",
        str(WRK_DIR / shape_script),
        f"http://127.0.0.1:{port}{path}",
    ]
    env = {"IDS_FILE": str(ids_file), "WRK_TAG": f"{random.getrandbits(32):08x}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    match = re.search(r"WRK_RESULT (.*)", done.stdout)
    return match[1] if match else done.stdout[-300:]


def worker_pid(pid: int) -> int:
    """The serving process: the deepest descendant of `pid` (the CLI may start uvicorn in a child)."""
    while True:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii").split()
        if not children:
            return pid
        pid = int(children[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--shapes", default=",".join(s.key for s in SHAPES))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--service-cmd")
    args = parser.parse_args()
    wanted, keys = args.shapes.split(","), [s.key for s in SHAPES]
    if unknown := [key for key in wanted if key not in keys]:
        parser.error(f"--shapes: no shape {', '.join(unknown)}; the shapes are {', '.join(keys)}")
    if unknown := [t for t in args.targets.split(",") if t not in TARGETS]:
        parser.error(f"--targets: no target {', '.join(unknown)}; the targets are {', '.join(TARGETS)}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out {args.out}: {exc.strerror}")
    service = service_command(args.service_cmd)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    logs = HERE / "results" / "tmp" / f"profile-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    summaries: list[str] = []
    rows = seed_rows(10_000)
    ids_file = logs / "ids.txt"
    live = [str(r[0]) for r in rows if r[6] is None]
    ids_file.write_text("\n".join(random.Random(7).sample(live, 1000)) + "\n", encoding="ascii")
    shapes = [s for s in SHAPES if s.key in wanted]
    results: dict[str, dict[str, dict[str, float]]] = {}
    wrk_lines: dict[str, dict[str, str]] = {}
    with cleanup_on_exit() as cleanups:
        sink = OtlpSink()
        cleanups.append(sink.close)
        for target in args.targets.split(","):
            database = f"profile_{stamp}_{target.replace('-', '_')}"
            url = with_database(args.dsn, database)
            asyncio.run(create_database(args.dsn, database))
            cleanups.append(lambda name=database: asyncio.run(drop_database(args.dsn, name)))
            subprocess.run(
                [*service, "migrate"],
                env={**base_env(), "DATABASE_URL": url},
                check=True,
                capture_output=True,
            )
            asyncio.run(seed(url, rows))
            env = {
                "WORKERS": "1",
                "LOG_FORMAT": "json",
                "DATABASE_URL": url,
                "TELEMETRY_ENABLED": "true" if target == "service" else "false",
            }
            if target == "service":
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
            port = free_port()
            process = ServiceProcess(
                env,
                ("--host", "127.0.0.1", "--port", str(port)),
                port,
                [*service, "--workers", "1"],
                environ=base_env(),
                log_path=logs / f"{target}.log",
                own_group=True,
            )
            cleanups.append(process.close)
            pid = worker_pid(process.start(timeout=60).pid)
            for shape in shapes:
                wait_quiet(max_wait=5)
                run_wrk(port, shape.script, shape.path, 2, ids_file)
                raw = logs / f"{target}-{shape.key}.raw"
                spy = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--pid",
                        str(pid),
                        "--format",
                        "raw",
                        "--nonblocking",
                        "--full-filenames",
                        "--rate",
                        str(args.rate),
                        "--duration",
                        str(args.seconds),
                        "--output",
                        str(raw),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(0.3)
                wrk_lines.setdefault(target, {})[shape.key] = run_wrk(
                    port, shape.script, shape.path, args.seconds, ids_file
                )
                spy.wait(timeout=args.seconds + 30)
                stacks = read_raw(raw)
                results.setdefault(target, {})[shape.key] = breakdown(stacks)
                top = "\n".join(f"{share:6.1%}  {frame}" for share, frame in leaves(stacks))
                parts = "\n".join(f"{share:6.1%}  {layer}" for layer, share in breakdown(stacks).items())
                summaries.append(
                    f"# {target} {shape.label}: {sum(stacks.values())} samples at {args.rate}/s "
                    f"under wrk {CONNECTIONS} connections\n# wrk: {wrk_lines[target][shape.key]}\n\n"
                    f"## Layers\n{parts}\n\n## Heaviest innermost frames (self time)\n{top}\n"
                )
                print(f"profile: {target} {shape.key}: {wrk_lines[target][shape.key]}", flush=True)
            process.close()
    write_report(args.out / "profile.md", results, wrk_lines, shapes, stamp)
    site = sysconfig.get_paths()["purelib"] + "/"
    frames = "\n\n".join(summaries).replace(site, "").replace(str(HERE.parent) + "/", "")
    (args.out / "profile-frames.txt").write_text(frames, encoding="utf-8")
    return 0


def write_report(
    path: Path,
    results: dict[str, dict[str, dict[str, float]]],
    wrk_lines: dict[str, dict[str, str]],
    shapes: list,
    stamp: str,
) -> None:
    layers = [layer for layer, _ in LAYERS] + [OTHER]
    lines = [
        "# Where a request's time goes",
        "",
        f"py-spy samples of the one worker under wrk ({CONNECTIONS} connections), {stamp} UTC; "
        "`loadtest/profile_shapes.py`. Share of the worker's busy samples per layer (idle samples are not "
        "counted). The heaviest frames of each: `results/profile-frames.txt`.",
    ]
    for target, by_shape in results.items():
        keys = [s for s in shapes if s.key in by_shape]
        lines += [
            "",
            f"## {target}",
            "",
            "| layer | " + " | ".join(s.label for s in keys) + " |",
            "|---|" + "---:|" * len(keys),
        ]
        for layer in layers:
            values = [by_shape[s.key].get(layer, 0.0) for s in keys]
            if any(v >= 0.005 for v in values):
                lines.append(f"| {layer} | " + " | ".join(f"{v:.0%}" for v in values) + " |")
        rps = []
        for s in keys:
            match = re.search(r"requests=(\d+) duration_us=(\d+)", wrk_lines[target][s.key])
            rps.append(f"{int(match[1]) / (int(match[2]) / 1e6):.0f}" if match else "?")
        lines.append("| *req/s while sampled* | " + " | ".join(rps) + " |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"profile: {path}")


if __name__ == "__main__":
    sys.exit(main())
