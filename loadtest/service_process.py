"""The service as a subprocess on a free port, for the tests and tools that need a real process: its log,
signals, several workers, crashes, a load from outside. Standard library only.

    with ServiceProcess({"DATABASE_URL": url}) as service:
        urllib.request.urlopen(f"{service.url}/users/")
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

# This interpreter's service CLI; a tool outside the service's environment passes e.g. `uv run user-service`.
CLI = (sys.executable, "-m", "user_service.main.cli")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str, timeout: float = 1) -> bool:
    """Whether a GET of `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):
        return False


class ServiceProcess:
    """`command` (the service's CLI) with `args`, listening on `port` (a free one by default).

    It starts from `environ` (by default the caller's environment, with JSON logs at info and
    ENVIRONMENT=test), with PORT and `env` on top. Its output goes to `log_path` and stays there, or to a
    temporary file removed at the end. With `own_group` it runs in a process group of its own, which
    stop() signals as a whole (a wrapper such as `uv run` and what it started).
    """

    def __init__(
        self,
        env: Mapping[str, str],
        args: Sequence[str] = (),
        port: int | None = None,
        command: Sequence[str] = CLI,
        *,
        environ: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        own_group: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if environ is None:
            environ = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "info", "ENVIRONMENT": "test"}
        self.env = {**environ, "PORT": str(self.port), **env}
        self.command = [*command, *args]
        self.own_group = own_group
        self.keep_log = log_path is not None
        if log_path is None:
            self._log = tempfile.NamedTemporaryFile(prefix="user-service-", suffix=".log", delete=False)  # noqa: SIM115
            log_path = Path(self._log.name)
        else:
            self._log = log_path.open("wb")
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Self:
        """Start it and wait until GET /healthcheck answers 200."""
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=self.own_group,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.command[0]} exited with {self.process.returncode}:\n{self.output()}"
                )
            if answers(f"{self.url}/healthcheck"):
                return self
            time.sleep(0.1)
        raise TimeoutError(f"the service did not answer within {timeout} s:\n{self.output()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL if it is still there after `timeout`; the exit code (None: never started)."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self._signal_all(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_all(signal.SIGKILL)
            self.process.wait(5)
            raise

    def _signal_all(self, sig: int) -> None:
        assert self.process is not None
        if self.own_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)

    def __enter__(self) -> Self:
        return self.start()

    def close(self) -> None:
        """Stop it, and remove its log unless it was given a `log_path`."""
        try:
            self.stop()
        finally:
            self._log.close()
            if not self.keep_log:
                self.log_path.unlink(missing_ok=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
