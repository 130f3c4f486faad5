"""One request's telemetry outside the app, part by part, counted in instructions under callgrind.

    uv run --group bench python loadtest/telemetry_parts.py [PART ...]

What the request middleware does for a `GET /users/{id}` with telemetry on (its log fields bound, the
in-flight gauge, the server span, one SQL statement's span and histogram through the pool's connection
class, the decision on the trace, the duration histogram, the access line, the span's end) is run in a
loop, with nothing else: no framework, no database (the statement is a coroutine that returns at once),
log lines to /dev/null, spans not exported. The loop runs under valgrind's callgrind twice, with 0 and
with `--loops` iterations; the difference over the iterations is the instructions one request's telemetry
costs. A part named on the command line is left out (`span`: the server span, so the statement's span
too; `sql`: the statement's span and histogram; `log`: the access line; `metrics`: the HTTP metrics), so
the difference to `all` is that part's price. In the app every part costs the same instructions (it is
the same code), but not the same time: `inprocess.py --instructions` counts the whole request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

PARTS = ("span", "sql", "log", "metrics")
QUERY = "SELECT id, username FROM users WHERE id = $1"
ROUTE = "/users/{user_id}"
SCOPE = {
    "type": "http",
    "method": "GET",
    "path": "/users/0195f3a0-0000-7000-8000-000000000000",
    "headers": [(b"host", b"localhost:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
    "scheme": "http",
    "http_version": "1.1",
    "client": ("127.0.0.1", 40000),
    "server": ("127.0.0.1", 8000),
}


def _request(without: set[str]) -> Callable[[], Awaitable[None]]:
    """Telemetry configured as the service does it, and one request's telemetry as a coroutine."""
    os.environ["OTEL_TRACES_EXPORTER"] = "none"
    from user_service.infrastructure.telemetry import logging as telemetry_logging
    from user_service.infrastructure.telemetry import sql
    from user_service.infrastructure.telemetry.tracing import configure_tracing
    from user_service.presentation.http import access_log, request_metrics, server_span

    telemetry_logging.configure_logging("info", json=True, stream=open(os.devnull, "w"))  # noqa: SIM115
    configure_tracing("parts")

    class Connection:  # what TracedConnection._traced reads of its connection
        role = "primary"
        _statement = sql.TracedConnection._statement

        def __init__(self) -> None:
            self._span_attributes = {"db.system.name": "postgresql", "db.instance.role": "primary"}
            self._statements: dict[str, Any] = {}

    async def statement(query: str, *args: Any) -> None:
        return None

    connection = Connection()

    async def request() -> None:
        bound = telemetry_logging.bind_request(request_id="r")
        active = None if "metrics" in without else request_metrics.started("GET")
        span, token = (None, None) if "span" in without else server_span.start(SCOPE, "GET", SCOPE["path"])
        start = time.perf_counter()
        if "sql" in without:
            await statement(QUERY, 1)
        else:
            await sql.TracedConnection._traced(connection, statement, QUERY, 1)  # type: ignore[arg-type]
        duration = time.perf_counter() - start
        kept = (
            None if span is None else server_span.kept(span, status=200, duration=duration, client_gone=False)
        )
        if active is not None:
            request_metrics.finished(active, "GET", ROUTE, 200, duration, kept=span if kept else None)
        if "log" not in without:
            access_log.log_request(
                SCOPE,
                method="GET",
                route=ROUTE,
                path=SCOPE["path"],
                status=200,
                duration=duration,
                quiet=False,
                kept=kept,
                span=span,
            )
        if span is not None:
            server_span.end(
                span, token, method="GET", route=ROUTE, status=200, client_gone=False, kept=bool(kept)
            )
        telemetry_logging.unbind_request(bound)

    return request


async def _loop(request: Callable[[], Awaitable[None]], loops: int) -> None:
    for _ in range(50 + loops):  # the first 50 make every cache and series of the path
        await request()


def _instructions(loops: int, without: list[str]) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
    command += ["--child", str(loops), *without]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0 or not (m := re.search(r"Collected : (\d+)", done.stderr)):
        sys.exit(f"telemetry_parts: the run under callgrind failed: {done.stderr.strip()[-400:]}")
    return int(m.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("without", nargs="*", help=f"parts to leave out, of {', '.join(PARTS)}")
    parser.add_argument("--loops", type=int, default=2000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if unknown := set(args.without) - set(PARTS):
        sys.exit(f"telemetry_parts: no part {', '.join(sorted(unknown))}: the parts are {', '.join(PARTS)}")
    if args.child is not None:
        asyncio.run(_loop(_request(set(args.without)), args.child))
        return
    variants = [[]] + [[part] for part in (args.without or PARTS)]
    print(f"{'left out':12} {'instructions / request':>24}")
    for without in variants:
        per_request = (_instructions(args.loops, without) - _instructions(0, without)) / args.loops
        print(f"{'+'.join(without) or '(nothing)':12} {per_request:24,.0f}", flush=True)


if __name__ == "__main__":
    main()
