"""What a request costs the service's process, in-process: the app called as ASGI by concurrent clients,
with no server and no socket, and its CPU time per request (`time.process_time`, the median of the rounds).
Run under wrk, req/s moves with whatever else the machine does; the CPU a request costs here stays within
a few µs from run to run, so a part of a few µs can be priced. What it leaves out: the server, the socket,
and the export of kept spans (spans are made and decided on, `OTEL_TRACES_EXPORTER=none`).

    uv run --group bench python loadtest/inprocess.py [--shape by_id|page|create] [VARIANT ...]

The shapes: `GET /users/{id}` of existing users, `GET /users/?limit=100`, `POST /users/` of a new user
each (as the benchmark's).

A variant is `off` (telemetry off), `on` (the default settings), or `on-without-PART[+PART...]`, where a
part is patched out: `span` (the server span, and with it the SQL spans), `log` (the access line),
`metrics` (the HTTP metrics), `sql` (the SQL statements' spans and histogram). The default variants are
`off`, `on` and `on` without each part. Each variant runs in a process of its own, against one scratch
database of 10,000 seeded users on the server of `--dsn`.

`--instructions` runs each variant under valgrind's callgrind and counts the instructions a request
costs the process instead of its CPU time: about 50 times slower, but the same count from run to run
whatever else the machine does (the rounds of a run within 1–4 % at 8 clients; more clients make more
of the path depend on timing), so a change of a few percent on a shared machine shows. Counters are
zeroed before each round and dumped after it (`callgrind_control`, Debian's `valgrind`); the kernel's
work (the write of a log line, the socket) is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import DEFAULT_DSN, base_env, migrate, seed, seed_rows, service_command
from scratch_db import create_database, drop_database

PARTS = ("span", "log", "metrics", "sql")
DEFAULT_VARIANTS = ["off", "on", *(f"on-without-{part}" for part in PARTS)]


def patch_out(part: str) -> None:
    """Replace one part of the request's telemetry by nothing (in this process only)."""
    if part == "span":
        from user_service.presentation.http import server_span

        setattr(server_span, "start", lambda *_: (None, None))  # noqa: B010 - a patch, on purpose
    elif part == "log":
        from user_service.presentation.http import access_log

        setattr(access_log, "log_request", lambda *_, **__: None)  # noqa: B010
    elif part == "metrics":
        from user_service.presentation.http import request_metrics

        setattr(request_metrics, "started", lambda *_: None)  # noqa: B010
        setattr(request_metrics, "finished", lambda *_, **__: None)  # noqa: B010
    elif part == "sql":
        from user_service.infrastructure.telemetry import sql

        async def plain(_: Any, method: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            return await method(query, *args, **kwargs)

        setattr(sql.TracedConnection, "_traced", plain)  # noqa: B010
    else:
        sys.exit(f"inprocess: no part {part!r}; the parts are {', '.join(PARTS)}")


async def measure(args: argparse.Namespace, ids: list[str]) -> list[float]:
    from user_service.main.app import app_from_environment  # the settings are read here

    app = app_from_environment()
    for part in args.without:
        patch_out(part)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    if (started := await outbox.get())["type"] != "lifespan.startup.complete":
        sys.exit(f"inprocess: the app did not start: {started}")
    rng = random.Random(7)
    statuses: dict[int, int] = {}

    created = 0
    tag = f"{os.getpid():x}"

    def request() -> tuple[str, str, bytes, bytes]:
        nonlocal created
        if args.shape == "by_id":
            return "GET", f"/users/{rng.choice(ids)}", b"", b""
        if args.shape == "page":
            return "GET", "/users/", b"limit=100", b""
        created += 1
        body = f'{{"username":"i{tag}_{created}","first_name":"Bench","last_name":"User"}}'
        return "POST", "/users/", b"", body.encode()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    async def one() -> None:
        method, path, query, body = request()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        headers = [(b"host", b"127.0.0.1:8000")]
        if body:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 40000),
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "headers": headers,
            "state": {},
        }
        await app(scope, receive, send)

    async def client(count: int) -> None:
        for _ in range(count):
            await one()

    await client(300)  # warm: the pool's connections, the statement caches, the metric children
    rounds = []
    for _ in range(args.rounds):
        if args.instructions:
            callgrind("--zero")
        cpu = time.process_time()
        await asyncio.gather(*(client(args.requests // args.concurrency) for _ in range(args.concurrency)))
        rounds.append((time.process_time() - cpu) / requests_per_round(args))
        if args.instructions:
            callgrind("--dump")
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    expected = 201 if args.shape == "create" else 200
    if set(statuses) != {expected}:
        sys.exit(f"inprocess: answers other than {expected}: {statuses}")
    return rounds


def requests_per_round(args: argparse.Namespace) -> int:
    return int(args.requests // args.concurrency * args.concurrency)


def callgrind(option: str) -> None:
    """Zero or dump this process's instruction counters (it runs under callgrind)."""
    subprocess.run(
        ["callgrind_control", option, str(os.getpid())], check=True, capture_output=True, timeout=300
    )


def instructions_per_request(out_dir: str, args: argparse.Namespace) -> tuple[float, ...]:
    """Thousands of instructions per request of each round's dump: the median, the least, the most."""
    dumps = sorted(
        (int(m.group(1)), name)
        for name in os.listdir(out_dir)
        if (m := re.fullmatch(r"callgrind\.\d+\.(\d+)", name))
    )
    if len(dumps) != args.rounds:
        sys.exit(f"inprocess: {len(dumps)} callgrind dumps for {args.rounds} rounds in {out_dir}")
    values = []
    for _, name in dumps:
        text = Path(out_dir, name).read_text(encoding="utf-8", errors="replace")
        if not (m := re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)):
            sys.exit(f"inprocess: no instruction total in {name}")
        values.append(int(m.group(1)) / requests_per_round(args) / 1000)
    return statistics.median(values), min(values), max(values)


def child(args: argparse.Namespace) -> None:
    import uvloop

    with open(args.ids_file, encoding="ascii") as fh:
        ids = [line.strip() for line in fh if line.strip()]
    rounds = uvloop.run(measure(args, ids))
    with open(args.result, "w", encoding="ascii") as fh:
        fh.write(f"{statistics.median(rounds) * 1e6:.1f} {min(rounds) * 1e6:.1f} {max(rounds) * 1e6:.1f}\n")


def parse_variant(variant: str) -> tuple[str, list[str]]:
    telemetry, _, without = variant.partition("-without-")
    parts = [part for part in without.split("+") if part]
    if telemetry not in ("on", "off") or (without and telemetry == "off") or not set(parts) <= set(PARTS):
        sys.exit(
            f"inprocess: no variant {variant!r}: off, on, or on-without-PART[+PART...] of {', '.join(PARTS)}"
        )
    return telemetry, parts


def run_variant(variant: str, args: argparse.Namespace, url: str, ids_file: str) -> tuple[float, ...]:
    telemetry, parts = parse_variant(variant)
    result = Path(ids_file).with_suffix(".result")
    command = [sys.executable, __file__, "--child", "--ids-file", ids_file, "--shape", args.shape]
    command += ["--result", str(result)]
    command += ["--rounds", str(args.rounds), "--requests", str(args.requests)]
    command += ["--concurrency", str(args.concurrency)]
    for part in parts:
        command += ["--without", part]
    out_dir = tempfile.mkdtemp(prefix="inprocess-callgrind-")
    if args.instructions:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/callgrind.%p", *command]
        command.append("--instructions")
    env = {
        **base_env(),
        "DATABASE_URL": url,
        "TELEMETRY_ENABLED": "true" if telemetry == "on" else "false",
        "OTEL_TRACES_EXPORTER": "none",
        "LOG_FORMAT": "json",
    }
    # The log lines go to a file, as the benchmark's do: a pipe read by this process would cost the
    # worker more per line than the line itself.
    with tempfile.TemporaryFile() as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=log, timeout=600, check=False)
        if done.returncode != 0:
            log.seek(0)
            sys.exit(f"inprocess: {variant} failed: {log.read().decode(errors='replace').strip()[-500:]}")
    values = tuple(float(x) for x in result.read_text(encoding="ascii").split())
    result.unlink()
    if args.instructions:
        values = instructions_per_request(out_dir, args)
    shutil.rmtree(out_dir, ignore_errors=True)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", default=DEFAULT_VARIANTS)
    parser.add_argument("--shape", choices=("by_id", "page", "create"), default="by_id")
    parser.add_argument("--dsn", default=os.environ.get("BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000, help="per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions under valgrind's callgrind instead of CPU time (see above)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--without", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    for variant in args.variants:
        parse_variant(variant)
    name = f"inprocess_{os.getpid()}"
    try:
        url = asyncio.run(create_database(args.dsn, name))
    except (OSError, asyncpg.PostgresError) as exc:
        sys.exit(f"inprocess: cannot create a scratch database on {args.dsn}: {exc}")
    try:
        try:
            migrate(service_command(None), url)
        except RuntimeError as exc:
            sys.exit(f"inprocess: {exc}")
        rows = seed_rows(10_000)
        asyncio.run(seed(url, rows))
        with tempfile.NamedTemporaryFile("w", suffix=".ids", delete=False, encoding="ascii") as fh:
            fh.write("\n".join(str(r[0]) for r in rows if r[6] is None) + "\n")
        ids_file = fh.name
        print(f"{args.shape}, {args.concurrency} clients, {args.rounds} rounds of {args.requests} requests")
        unit = "k instructions / request" if args.instructions else "CPU µs / request"
        if args.instructions and shutil.which("callgrind_control") is None:
            sys.exit("inprocess: --instructions needs valgrind (Debian: apt-get install valgrind)")
        print(f"{'variant':34} {unit:>17} {'min':>7} {'max':>7}")
        for variant in args.variants:
            median, low, high = run_variant(variant, args, url, ids_file)
            print(f"{variant:34} {median:17.1f} {low:7.1f} {high:7.1f}", flush=True)
        os.unlink(ids_file)
    finally:
        asyncio.run(drop_database(args.dsn, name))


if __name__ == "__main__":
    main()
