"""What the fault and hostile tests read off a run: the service's JSON log lines, percentiles, what an answer
gives away, and one report line of the numbers."""

import re
from pathlib import Path
from typing import Any

import orjson


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
