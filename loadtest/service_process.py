"""The service as a subprocess on a free port, for the tests and tools that need a real process: its log,
signals, several workers, crashes, a load from outside. Standard library only.

    with ServiceProcess({"DATABASE_URL": url}) as service:
        urllib.request.urlopen(f"{service.url}/users/")
"""

from __future__ import annotations

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
    """`command` (the service's CLI) with `args`, listening on `port` (a free one by default), with the
    caller's environment, JSON logs at info, ENVIRONMENT=test and `env` on top; its output in a temporary
    file."""

    def __init__(
        self,
        env: Mapping[str, str],
        args: Sequence[str] = (),
        port: int | None = None,
        command: Sequence[str] = CLI,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
            "ENVIRONMENT": "test",
            "PORT": str(self.port),
            **env,
        }
        self.command = [*command, *args]
        self._log = tempfile.NamedTemporaryFile(prefix="user-service-", suffix=".log", delete=False)  # noqa: SIM115
        self.log_path = Path(self._log.name)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Self:
        """Start it and wait until GET /healthcheck answers 200."""
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}:\n{self.output()}")
            if answers(f"{self.url}/healthcheck"):
                return self
            time.sleep(0.1)
        raise TimeoutError(f"the service did not answer within {timeout} s:\n{self.output()}")

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
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            self._log.close()
            self.log_path.unlink(missing_ok=True)
