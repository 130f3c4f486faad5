"""What a test needs from the machine (RabbitMQ, PostgreSQL, promtool, node, ...): when it is missing,
the test skips with the reason on a developer's machine, and fails in CI (`CI` set), which must provide it."""

import asyncio
import os
import shutil
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

import pytest


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{reason} (CI must provide it)", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, *fallbacks: str, install: str) -> str:
    """The path of an executable: on PATH, or at one of `fallbacks`."""
    found = shutil.which(name) or next((path for path in fallbacks if os.access(path, os.X_OK)), None)
    if found is None:
        unavailable(f"{name} is not installed ({install})")
    return found


def require_answer(probe: Callable[[], Coroutine[Any, Any, object]], what: str) -> None:
    """Runs `probe` (an async function that reaches a server); when it raises, `what` is unavailable."""
    try:
        asyncio.run(probe())
    except Exception as exc:
        unavailable(f"{what}: {exc!r}")
