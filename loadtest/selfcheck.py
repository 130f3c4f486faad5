"""Self-check of the load test: does it pass the real API and catch a wrong one?

    python3 loadtest/selfcheck.py                 # the service, started here on an embedded PostgreSQL
    python3 loadtest/selfcheck.py --host URL      # a service that is already running

Two short Locust runs, made by loadtest/run.sh (Locust in its own environment):

1. against the service: the run (of every user class) must pass (exit 0), every route must have been
   exercised, with no failure;
2. against the same service behind a defect proxy that alters its answers the way a broken server would
   answer (descending order ignored, usernames looked up and kept unique case-sensitively, a deleted user
   that keeps its username, an occasional 500): the run must fail on its failure ratio, and each defect
   must show up as failures of the requests it breaks.

Without --host each run gets a service of its own (`uv run user-service` on an embedded PostgreSQL in a
temporary folder), so that both start from an empty table. Standard library only. It exits non-zero if
the load test misjudges either. Results go to loadtest/results/tmp/selfcheck/.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import itertools
import json
import re
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from service_process import ServiceProcess

HERE = Path(__file__).resolve().parent
SERVICE = ("uv", "run", "--project", str(HERE.parent), "--frozen", "--quiet", "user-service")

DEFECTS = {
    # defect -> the request names (in Locust's statistics) that must show failures
    "desc_ignored": ["GET /users/"],
    "case_sensitive_usernames": ["GET /users/@{username}", "POST /users/ [409 username taken]"],
    "deleted_keeps_username": ["DELETE /users/{user_id}"],
    "sporadic_500": ["GET /users/{user_id}"],
}
# Every user class, with shorter waits than a user's, so that every (rare) route comes up in a short run.
# The latency bound is CI's (a shared machine): what is checked here is how the load test judges answers.
QUICK_USERS = ("--max-p95-ms", "1000", "--", "--wait-min", "0.02", "--wait-max", "0.1")
QUICK_USERS += ("Writers", "Readers", "Mixed")
EXPECTED_NAMES = [
    "GET /users/",
    "POST /users/",
    "GET /users/{user_id}",
    "GET /users/@{username}",
    "PUT /users/{user_id}/username",
    "PUT /users/{user_id}/full-name",
    "DELETE /users/{user_id}",
    "POST /users/ [409 username taken]",
    "POST /users/ [422 invalid]",
]


# ---------------------------------------------------------------------------------------------------------
# The defect proxy: the real answers, some of them altered
# ---------------------------------------------------------------------------------------------------------

BY_ID = re.compile(r"/users/[0-9a-fA-F-]{36}")
# Not passed on: hop-by-hop headers, those the proxy sets itself, and compression (answers are read here).
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "server", "date"}
HOP_BY_HOP |= {"accept-encoding"}
USERNAME_TAKEN = "urn:user-service:problem:username-taken"


def problem(status: int, kind: str, title: str, detail: str) -> dict[str, Any]:
    return {"type": f"urn:user-service:problem:{kind}", "title": title, "status": status, "detail": detail}


class DefectHandler(BaseHTTPRequestHandler):
    """One client connection: its requests go on to the service over a connection of its own."""

    upstream: tuple[str, int]
    reads: Iterator[int]
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 65536  # one write per response; handle_one_request flushes it
    _conn: http.client.HTTPConnection | None = None

    def log_message(self, *args: Any) -> None:
        pass

    def forward(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        for attempt in (1, 2):  # a kept-alive connection the service has closed meanwhile: once more
            conn = self._conn = self._conn or http.client.HTTPConnection(*self.upstream, timeout=30)
            try:
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def reply(self, status: int, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> None:
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            kind = "application/json" if status < 400 else "application/problem+json"
            headers = {"content-type": kind, **(headers or {})}
        self.send_response(status)
        for key, value in (headers or {}).items():
            if key not in HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.handle_request()

    def do_POST(self) -> None:
        self.handle_request()

    def do_PUT(self) -> None:
        self.handle_request()

    def do_DELETE(self) -> None:
        self.handle_request()

    def handle_request(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        method, parts = self.command, urlsplit(self.path)
        route = parts.path.rstrip("/")
        path = self.path
        if method == "GET" and route == "/users" and "order=desc" in parts.query:  # desc_ignored
            path = urlunsplit(parts._replace(query=parts.query.replace("order=desc", "order=asc")))
        if method == "GET" and BY_ID.fullmatch(route) and next(self.reads) % 25 == 0:  # sporadic_500
            return self.reply(500, problem(500, "internal-error", "Internal error", "something broke"))
        before = self.forward("GET", route) if method == "DELETE" and BY_ID.fullmatch(route) else None
        status, headers, answer = self.forward(method, path, body)

        if before is not None and before[0] == 200 and status == 200:  # deleted_keeps_username
            kept = {**json.loads(answer), "username": json.loads(before[2]).get("username")}
            return self.reply(status, kept)
        if method == "GET" and route.startswith("/users/@") and status == 200:  # case_sensitive_usernames
            asked = route.removeprefix("/users/@")
            if json.loads(answer).get("username") != asked:
                return self.reply(404, problem(404, "user-not-found", "User not found", f"no user @{asked}"))
        if method == "POST" and route == "/users" and status == 409:  # case_sensitive_usernames
            sent = json.loads(body)
            if json.loads(answer).get("type") == USERNAME_TAKEN:
                holder_status, _, holder = self.forward("GET", f"/users/@{sent['username']}")
                if holder_status == 200 and json.loads(holder).get("username") != sent["username"]:
                    names = ("username", "first_name", "last_name", "middle_name")
                    made = {"id": sent.get("user_id") or str(uuid.uuid4()), "deleted": False}
                    made |= {key: sent[key] for key in names if sent.get(key)}
                    return self.reply(201, made, {"location": f"/users/{made['id']}"})
        return self.reply(status, answer, headers)


@contextlib.contextmanager
def defect_proxy(upstream: str) -> Iterator[str]:
    """A proxy in front of the service at `upstream` that answers as a service with every defect would;
    its URL."""
    parts = urlsplit(upstream)
    target = (parts.hostname or "127.0.0.1", parts.port or 80)
    handler = type("Handler", (DefectHandler,), {"upstream": target, "reads": itertools.count(1)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="defect-proxy", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def service(host: str | None) -> Iterator[str]:
    """`host`, or a service of its own on an embedded PostgreSQL (stopped, its files removed, after)."""
    if host:
        yield host
        return
    with (
        tempfile.TemporaryDirectory(prefix="selfcheck-", ignore_cleanup_errors=True) as data_dir,
        ServiceProcess({"DATA_DIR": data_dir, "LOG_LEVEL": "warning"}, command=SERVICE) as process,
    ):
        yield process.url


# ---------------------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------------------


def run_load(host: str, out: Path, seconds: int, users: int) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Run loadtest/run.sh; its exit code, its verdict (summary.json) and {"METHOD name": (requests,
    failures)}."""
    cmd = [str(HERE / "run.sh"), "--host", host, "-u", str(users), "-r", str(users), "-t", f"{seconds}s"]
    cmd += ["--out", str(out), *QUICK_USERS]
    print("$", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, check=False, timeout=seconds + 120, stdout=subprocess.DEVNULL).returncode
    summary_file = out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    stats: dict[str, tuple[int, int]] = {}
    stats_file = out / "stats_stats.csv"
    if stats_file.exists():
        with stats_file.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row["Type"]:
                    stats[f"{row['Type']} {row['Name']}"] = (
                        int(row["Request Count"]),
                        int(row["Failure Count"]),
                    )
    return code, summary, stats


def check_right(host: str | None, seconds: int, users: int, out: Path) -> list[str]:
    with service(host) as url:
        code, _, stats = run_load(url, out, seconds, users)
    errors = [] if code == 0 else [f"the service failed the load test (exit {code}); see {out}"]
    errors += [f"{name}: never requested" for name in EXPECTED_NAMES if stats.get(name, (0, 0))[0] == 0]
    errors += [f"{name}: {f} failures against the service" for name, (_, f) in stats.items() if f]
    return errors


def check_wrong(host: str | None, seconds: int, users: int, out: Path) -> list[str]:
    with service(host) as url, defect_proxy(url) as wrong:
        code, summary, stats = run_load(wrong, out, seconds, users)
    errors = [] if code != 0 else ["a wrong API passed the load test (exit 0)"]
    if not any(reason.startswith("failure ratio") for reason in summary.get("reasons", [])):
        errors.append(f"the wrong API's run did not fail on its failure ratio: {summary}")
    for defect, names in DEFECTS.items():
        errors += [f"{defect}: no failures of {name}" for name in names if stats.get(name, (0, 0))[1] == 0]
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", help="a running service to check against (default: start one per run)")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    out = HERE / "results" / "tmp" / "selfcheck"
    errors = check_right(args.host, args.seconds, args.users, out / "right")
    errors += check_wrong(args.host, args.seconds, args.users, out / "wrong")
    for error in errors:
        print("FAIL:", error)
    print("self-check", "failed" if errors else "passed: the service passes, every defect is caught")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
