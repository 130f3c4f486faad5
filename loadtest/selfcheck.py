"""Self-check of the load test: does it pass a right API and catch a wrong one?

    python3 loadtest/selfcheck.py                 # against an in-memory stand-in of the HTTP contract
    python3 loadtest/selfcheck.py --host URL      # one short run against a real server

Without --host it serves an in-memory implementation of the users API (stdlib only) twice:

1. as the contract says: the run must pass (exit 0), every route must have been exercised, no failures;
2. with deliberate defects (descending order ignored, case-sensitive lookup and uniqueness of usernames,
   a deleted user that keeps its username, an occasional 500): the run must fail and each defect must
   show up as failures of the request it breaks.

It runs Locust the way loadtest/run.sh does (its own environment) and exits non-zero if the load test
misjudges either server. Results go to loadtest/results/tmp/selfcheck/.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import re
import subprocess
import sys
import threading
import unicodedata
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}", re.ASCII)

DEFECTS = {
    # defect -> the request names (in Locust's statistics) that must show failures
    "desc_ignored": ["GET /users/"],
    "case_sensitive_usernames": ["GET /users/@{username}", "POST /users/ [409 username taken]"],
    "deleted_keeps_username": ["DELETE /users/{user_id}"],
    "sporadic_500": ["GET /users/{user_id}"],
}
# The stand-in answers in a millisecond: shorter waits make every (rare) route come up in a short run.
QUICK_USERS = ("--wait-min", "0.02", "--wait-max", "0.1")
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
# The stand-in
# ---------------------------------------------------------------------------------------------------------


def valid_name(value: object) -> bool:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 64:
        return False
    letters = [unicodedata.category(c)[0] == "L" for c in value.strip()]
    allowed = all(
        ok or c in " -'\u2019." or unicodedata.category(c)[0] == "M"
        for ok, c in zip(letters, value.strip(), strict=True)
    )
    return allowed and any(letters)


class Store:
    def __init__(self, defects: set[str]) -> None:
        self.defects = defects
        self.lock = threading.Lock()
        self.users: dict[uuid.UUID, dict[str, Any]] = {}
        self.clock = itertools.count()
        self.calls = itertools.count()

    def key(self, username: str) -> str:
        return username if "case_sensitive_usernames" in self.defects else username.lower()

    def live_with(self, username: str) -> dict[str, Any] | None:
        return next(
            (
                u
                for u in self.users.values()
                if not u["deleted"] and self.key(u["username"]) == self.key(username)
            ),
            None,
        )

    def view(self, user: dict[str, Any]) -> dict[str, Any]:
        out = {
            "id": str(user["id"]),
            "username": user["username"],
            "first_name": user["first_name"],
            "last_name": user["last_name"],
            "middle_name": user["middle_name"],
            "deleted": user["deleted"],
        }
        if user["deleted"] and "deleted_keeps_username" not in self.defects:
            out["username"] = None
        return {k: v for k, v in out.items() if v is not None}


class Handler(BaseHTTPRequestHandler):
    store: Store
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 65536  # one write per response; handle_one_request flushes it

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        ctype = "application/json" if status < 400 else "application/problem+json"
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def problem(self, status: int, title: str) -> None:
        self.reply(status, {"type": "about:blank", "title": title, "status": status})

    def body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def find(self, raw_id: str) -> dict[str, Any] | None:
        try:
            return self.store.users.get(uuid.UUID(raw_id))
        except ValueError:
            return None

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path.rstrip("/"), {k: v[-1] for k, v in parse_qs(url.query).items()}
        s = self.store
        with s.lock:
            if path == "/healthcheck":
                return self.reply(200, {"status": "ok"})
            if path == "/users":
                order = query.get("order", "asc")
                rows = sorted(s.users.values(), key=lambda u: (u["created"], str(u["id"])))
                if order == "desc" and "desc_ignored" not in s.defects:
                    rows.reverse()
                if "deleted" in query:
                    rows = [u for u in rows if u["deleted"] == (query["deleted"] == "true")]
                offset, limit = int(query.get("offset", 0)), int(query.get("limit", 1000))
                return self.reply(200, {"users": [s.view(u) for u in rows[offset : offset + limit]]})
            if path.startswith("/users/@"):
                user = s.live_with(path[len("/users/@") :])
                return self.reply(200, s.view(user)) if user else self.problem(404, "user not found")
            if path.startswith("/users/"):
                if "sporadic_500" in s.defects and next(s.calls) % 25 == 0:
                    return self.problem(500, "internal error")
                user = self.find(path[len("/users/") :])
                return self.reply(200, s.view(user)) if user else self.problem(404, "user not found")
        return self.problem(404, "no such route")

    def do_POST(self) -> None:
        data, s = self.body(), self.store
        if self.path.rstrip("/") != "/users":
            return self.problem(404, "no such route")
        if (
            not isinstance(data, dict)
            or not valid_name(data.get("first_name"))
            or not valid_name(data.get("last_name"))
            or ("middle_name" in data and not valid_name(data["middle_name"]))
        ):
            return self.problem(422, "invalid names")
        if not isinstance(data.get("username"), str) or not USERNAME.fullmatch(data["username"]):
            return self.problem(422, "invalid username")
        try:
            uid = uuid.UUID(data["user_id"]) if data.get("user_id") else uuid.uuid4()
        except (ValueError, AttributeError):
            return self.problem(422, "invalid user_id")
        with s.lock:
            if uid in s.users or s.live_with(data["username"]):
                return self.problem(409, "taken")
            user = {
                "id": uid,
                "username": data["username"],
                "first_name": data["first_name"].strip(),
                "last_name": data["last_name"].strip(),
                "middle_name": (data.get("middle_name") or "").strip() or None,
                "deleted": False,
                "created": next(s.clock),
            }
            s.users[uid] = user
            return self.reply(201, s.view(user), {"location": f"/users/{uid}"})

    def do_PUT(self) -> None:  # noqa: PLR0911
        data, s = self.body(), self.store
        match = re.fullmatch(r"/users/([^/]+)/(username|full-name)", self.path)
        if not match or not isinstance(data, dict):
            return self.problem(404 if not match else 422, "bad request")
        with s.lock:
            user = self.find(match[1])
            if user is None:
                return self.problem(404, "user not found")
            if match[2] == "username":
                if not isinstance(data.get("username"), str) or not USERNAME.fullmatch(data["username"]):
                    return self.problem(422, "invalid username")
                other = s.live_with(data["username"])
                if user["deleted"] or (other and other is not user):
                    return self.problem(409, "conflict")
                user["username"] = data["username"]
            else:
                if not valid_name(data.get("first_name")) or not valid_name(data.get("last_name")):
                    return self.problem(422, "invalid names")
                if user["deleted"]:
                    return self.problem(409, "conflict")
                user.update(
                    first_name=data["first_name"],
                    last_name=data["last_name"],
                    middle_name=data.get("middle_name"),
                )
            return self.reply(200, s.view(user))

    def do_DELETE(self) -> None:
        s = self.store
        with s.lock:
            user = self.find(self.path[len("/users/") :])
            if user is None:
                return self.problem(404, "user not found")
            if user["deleted"]:
                return self.problem(409, "already deleted")
            user["deleted"] = True
            return self.reply(200, s.view(user))


def serve(defects: set[str]) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"store": Store(defects)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------------------


def run_load(
    host: str, out: Path, seconds: int, users: int, *extra: str
) -> tuple[int, dict[str, tuple[int, int]]]:
    """Run loadtest/run.sh; return its exit code and {"METHOD name": (requests, failures)}."""
    cmd = [
        str(HERE / "run.sh"),
        "--host",
        host,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--out",
        str(out),
        *(("--", *extra) if extra else ()),
    ]
    print("$", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, check=False, timeout=seconds + 120, stdout=subprocess.DEVNULL).returncode
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
    return code, stats


def check_right(seconds: int, users: int, out: Path) -> list[str]:
    server = serve(set())
    try:
        code, stats = run_load(f"http://127.0.0.1:{server.server_port}", out, seconds, users, *QUICK_USERS)
    finally:
        server.shutdown()
    errors = [] if code == 0 else [f"a right API failed the load test (exit {code}); see {out}"]
    errors += [f"{name}: never requested" for name in EXPECTED_NAMES if stats.get(name, (0, 0))[0] == 0]
    errors += [f"{name}: {f} failures against a right API" for name, (_, f) in stats.items() if f]
    return errors


def check_wrong(seconds: int, users: int, out: Path) -> list[str]:
    server = serve(set(DEFECTS))
    try:
        code, stats = run_load(f"http://127.0.0.1:{server.server_port}", out, seconds, users, *QUICK_USERS)
    finally:
        server.shutdown()
    errors = [] if code != 0 else ["a wrong API passed the load test (exit 0)"]
    for defect, names in DEFECTS.items():
        errors += [f"{defect}: no failures of {name}" for name in names if stats.get(name, (0, 0))[1] == 0]
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", help="check a real server instead (one short run that must pass)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--users", type=int, default=10)
    args = parser.parse_args()
    out = HERE / "results" / "tmp" / "selfcheck"
    if args.host:
        code, stats = run_load(args.host, out / "host", args.seconds, args.users)
        for name, (n, f) in sorted(stats.items()):
            print(f"  {name:45} {n:7} requests {f:5} failures")
        print("PASS" if code == 0 else f"FAIL (exit {code}); see {out / 'host'}")
        return code
    errors = check_right(args.seconds, args.users, out / "right")
    errors += check_wrong(args.seconds, args.users, out / "wrong")
    for error in errors:
        print("FAIL:", error)
    print("self-check", "failed" if errors else "passed: a right API passes, every defect is caught")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
