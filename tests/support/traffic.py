"""Recorded HTTP traffic for fault tests: every request's timing and answer (and whether it is a problem),
and the service's JSON log lines."""

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from loadtest.problem import problem_errors


@dataclass(frozen=True)
class Outcome:
    """One request: when it started (monotonic), how long it took, and what came back (or the error)."""

    method: str
    path: str
    started: float
    elapsed: float
    status: int | None
    content_type: str
    body: bytes
    headers: dict[str, str]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        return orjson.loads(self.body)

    def problem_errors(self, status: int) -> list[str]:
        """Why this answer is not an RFC 9457 problem with `status` (empty when it is one)."""
        return problem_errors(self.status or 0, self.content_type, self.body, status)

    def __str__(self) -> str:
        answer = self.error or f"{self.status} {self.content_type} {self.body[:300]!r}"
        return f"{self.method} {self.path} after {self.elapsed:.3f} s: {answer}"


async def send(
    client: httpx.AsyncClient, method: str, path: str, json: Any = None, timeout: float = 10
) -> Outcome:
    started = time.monotonic()
    try:
        response = await client.request(method, path, json=json, timeout=timeout)
    except httpx.HTTPError as exc:
        return Outcome(
            method, path, started, time.monotonic() - started, None, "", b"", {}, f"{type(exc).__name__}"
        )
    return Outcome(
        method,
        path,
        started,
        time.monotonic() - started,
        response.status_code,
        response.headers.get("content-type", ""),
        response.content,
        dict(response.headers),
    )


def log_lines(path: Path) -> list[dict[str, Any]]:
    """Every line the service wrote, parsed as JSON (raises on a line that is not JSON)."""
    return [orjson.loads(line) for line in path.read_text(errors="replace").splitlines() if line.strip()]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


SECRET_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"postgres(ql)?(\+asyncpg)?://",
        r"amqps?://",
        r"traceback",
        r"\bfile \"",
        r"\bselect\b.+\bfrom\b",
        r"\binsert\s+into\b",
        r"\bupdate\b.+\bset\b",
        r"\bdelete\s+from\b",
        r"asyncpg",
        r"sqlalchemy",
        r"aio_?pika|aiormq",
        r"Error:",
        r"relation \"",
        r"127\.0\.0\.1:\d+",
        r"\.s\.PGSQL",
    )
]


def leaks(text: str, *secrets: str) -> list[str]:
    """What `text` gives away: any of `secrets`, connection strings, SQL, driver names, stack traces."""
    found = [secret for secret in secrets if secret and secret in text]
    found += [p.pattern for p in SECRET_PATTERNS if p.search(text)]
    return found


def report(what: str, **numbers: object) -> None:
    """One line of what a fault test observed (shown with `pytest -s`, and with a failure's output)."""
    print(f"[{what}] " + ", ".join(f"{k}={v}" for k, v in numbers.items()))
