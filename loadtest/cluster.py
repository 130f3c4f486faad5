"""Real servers from Debian's packages for the scale-out rehearsal, each in a temporary folder of its own,
on loopback ports, stopped and removed afterwards: a PostgreSQL 15 primary, a streaming replica made with
`pg_basebackup -R`, PgBouncer in transaction mode, and HAProxy health-checking the service's instances.

The servers run as the `postgres` user (PgBouncer refuses root, PostgreSQL too), so their folders are
handed to it. Each class starts in `start()` and stops in `stop()`; `stop()` is safe to call twice.
"""

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import orjson

from loadtest.service_process import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_INSTALL = "apt-get install -y --no-install-recommends postgresql-15"
RUN_AS = "postgres"


def _as_postgres(*command: str) -> list[str]:
    if os.geteuid() != 0:
        return list(command)
    return ["runuser", "-u", RUN_AS, "--", *command]


def _folder(prefix: str) -> Path:
    """A temporary folder the `postgres` user owns (the servers refuse to run as root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        user = pwd.getpwnam(RUN_AS)
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


class MissingTool(RuntimeError):
    """A server program this machine lacks; the message says how to install it."""


def require_tool(name: str, *fallbacks: str, install: str) -> str:
    found = shutil.which(name) or next((path for path in fallbacks if os.access(path, os.X_OK)), None)
    if found is None:
        raise MissingTool(f"{name} is not installed ({install})")
    return found


def _run(command: list[str], timeout: float = 60) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr[-2000:]}")


def pg_tool(name: str) -> str:
    """A PostgreSQL 15 program (Debian's wrappers on PATH may pick another version)."""
    path = PG_BIN / name
    return str(path) if os.access(path, os.X_OK) else require_tool(name, install=PG_INSTALL)


class Postgres:
    """A private PostgreSQL 15 server: a fresh primary, or a streaming replica of one (`replica_of`)."""

    def __init__(self, replica_of: "Postgres | None" = None) -> None:
        self.replica_of = replica_of
        self.port = free_port()
        self.dir = _folder("user-service-pg-")
        self.data = self.dir / "data"
        self._pg_ctl = pg_tool("pg_ctl")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> "Postgres":
        if not self.data.exists():
            if self.replica_of is None:
                _run(_as_postgres(pg_tool("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"))
                with (self.data / "postgresql.conf").open("a") as conf:
                    # fsync off: a test server's files are thrown away; durability is not what is tested.
                    conf.write("fsync = off\nmax_connections = 200\nwal_level = replica\n")
            else:
                _run(
                    _as_postgres(
                        pg_tool("pg_basebackup"),
                        "-h", "127.0.0.1", "-p", str(self.replica_of.port), "-U", "postgres",
                        "-D", str(self.data), "-R", "-X", "stream", "--checkpoint=fast",
                    )
                )  # fmt: skip
        self.resume()
        return self

    def resume(self) -> None:
        """Start the server on its folder (again)."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        _run(_as_postgres(self._pg_ctl, "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                          "-t", "30", "-o", options, "start"))  # fmt: skip

    def halt(self, mode: str = "fast") -> None:
        """Stop the server, keeping its folder for `resume()`."""
        _run(_as_postgres(self._pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"))

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                self.halt("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    async def connect(self, database: str = "postgres") -> asyncpg.Connection:
        return await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database=database)

    async def fetchval(self, query: str, *args: object, database: str = "postgres") -> object:
        conn = await self.connect(database)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()


class PgBouncer:
    """PgBouncer in transaction mode in front of `server`, every database of it."""

    def __init__(self, server: Postgres, pool_size: int = 20) -> None:
        self.server = server
        self.port = free_port()
        self.dir = _folder("user-service-pgbouncer-")
        self.pool_size = pool_size
        self._binary = require_tool(
            "pgbouncer", "/usr/sbin/pgbouncer", install="apt-get install -y --no-install-recommends pgbouncer"
        )
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> "PgBouncer":
        ini = self.dir / "pgbouncer.ini"
        auth = self.dir / "userlist.txt"
        auth.write_text('"postgres" ""\n')
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.server.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {auth}\n"
            f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\nmax_client_conn = 1000\n"
            "ignore_startup_parameters = extra_float_digits,application_name,search_path\n"
            # A server that cannot be reached is an error at once, not a wait of 120 s (the default).
            "query_wait_timeout = 5\nserver_login_retry = 1\nserver_connect_timeout = 2\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\npidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            for path in (ini, auth):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._process = subprocess.Popen(
            _as_postgres(self._binary, str(ini)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(self.port, 10)
        return self

    def halt(self) -> None:
        """Stop PgBouncer at once (SIGTERM: immediate shutdown), keeping its folder for `start()`."""
        if self._process is not None and self._process.poll() is None:
            # runuser forwards the signal to pgbouncer
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


class HAProxy:
    """HAProxy on one port in front of `backends` (ports on 127.0.0.1), health-checked on readiness."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="user-service-haproxy-"))
        self._binary = require_tool(
            "haproxy", "/usr/sbin/haproxy", install="apt-get install -y --no-install-recommends haproxy"
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "HAProxy":
        config = self.dir / "haproxy.cfg"
        errors = ""
        for status, title in ((502, "Bad Gateway"), (503, "Service Unavailable"), (504, "Gateway Timeout")):
            # The balancer's own answers are problem details too, as the API's are.
            body = orjson.dumps(
                {
                    "type": "urn:user-service:problem:service-unavailable",
                    "title": "Service unavailable",
                    "status": status,
                    "detail": "No instance of the service could answer; retry shortly.",
                }
            )
            (self.dir / f"{status}.http").write_bytes(
                f"HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\n"
                f"retry-after: 1\r\ncache-control: no-store\r\ncontent-length: {len(body)}\r\n"
                "connection: close\r\n\r\n".encode()
                + body
            )
            errors += f"  errorfile {status} {self.dir / f'{status}.http'}\n"
        servers = "".join(
            f"  server i{n} 127.0.0.1:{port} check inter 300ms fall 2 rise 2\n"
            for n, port in enumerate(self.backends)
        )
        config.write_text(
            "global\n  maxconn 4096\n"
            "defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n"
            "  option http-keep-alive\n"
            + errors
            + f"frontend api\n  bind 127.0.0.1:{self.port}\n  default_backend instances\n"
            "backend instances\n  balance roundrobin\n  option httpchk GET /healthcheck/ready\n"
            # a request cut by a dying instance is not replayed: a POST may have been applied
            "  retries 2\n  option redispatch\n" + servers
        )
        self._process = subprocess.Popen(
            [self._binary, "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(self.port, 10)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_for_port(port: int, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
