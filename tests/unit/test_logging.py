"""The log pipeline's two renderings: JSON lines for machines, a readable form for people."""

import asyncio
import io
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from structlog.testing import capture_logs

from user_service.infrastructure.telemetry import logging as telemetry_logging
from user_service.infrastructure.telemetry.logging import (
    LineLogger,
    _timestamp,
    bind_request,
    configure_logging,
    unbind_request,
)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, pipeline = root.handlers[:], root.level, telemetry_logging._pipeline
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    telemetry_logging._pipeline = pipeline


def test_json_lines_from_structlog_and_the_standard_library(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    structlog.get_logger("user_service.test").info("hello", answer=42)
    logging.getLogger("uvicorn.error").warning("from the standard library")
    logging.getLogger("user_service.test").debug("below the level")
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["event"], x["level"], x["logger"]) for x in lines] == [
        ("hello", "info", "user_service.test"),
        ("from the standard library", "warning", "uvicorn.error"),
    ]
    assert lines[0]["answer"] == 42
    assert all(x["service"] == "user-service" and x["timestamp"].endswith("Z") for x in lines)


def test_console_form_is_not_json(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", json=False, stream=stream)
    structlog.get_logger("user_service.test").info("hello", answer=42)
    text = stream.getvalue()
    assert "hello" in text
    assert "answer=42" in text
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text.splitlines()[0])


def test_the_default_is_json_when_not_a_terminal(restore_logging: None) -> None:
    stream = io.StringIO()  # not a tty
    configure_logging("info", stream=stream)
    structlog.get_logger("user_service.test").info("hello")
    assert orjson.loads(stream.getvalue().splitlines()[0])["event"] == "hello"


def test_timestamps_are_the_lines_own_time_in_utc_to_the_microsecond() -> None:
    stamps = []
    for _ in range(3):
        before = datetime.now(UTC)
        text = _timestamp()
        after = datetime.now(UTC)
        assert text.endswith("Z")
        parsed = datetime.fromisoformat(text)
        assert parsed.utcoffset() is not None
        assert before <= parsed <= after
        stamps.append(text)
    assert len(set(stamps)) == 3  # the second's text is reused, the microseconds are each line's


def test_a_line_logger_writes_what_a_structlog_logger_of_its_name_writes(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    bound = bind_request(request_id="r-1")
    try:
        structlog.get_logger("user_service.access").info("request", status=200)
        LineLogger("user_service.access").log("info", {"status": 200, "event": "request"})
    finally:
        unbind_request(bound)
    by_structlog, by_line = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert by_structlog.keys() == by_line.keys()
    assert list(by_line) == list(by_structlog)  # the same order of fields, too
    for line in (by_structlog, by_line):
        del line["timestamp"]
    assert by_line == by_structlog
    assert by_line["request_id"] == "r-1"


def test_a_line_logger_keeps_the_configured_level_and_follows_a_new_configuration(
    restore_logging: None,
) -> None:
    line = LineLogger("user_service.access")
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", json=True, stream=first)
    line.log("debug", {"event": "probe"})
    line.log("error", {"event": "failed"})
    configure_logging("debug", json=False, stream=second)
    line.log("debug", {"event": "probe"})
    assert [orjson.loads(x)["event"] for x in first.getvalue().splitlines()] == ["failed"]
    assert "probe" in second.getvalue()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(second.getvalue().splitlines()[0])


def test_a_line_logger_before_logging_is_configured_is_structlogs_logger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(telemetry_logging, "_pipeline", None)
    with capture_logs() as logs:
        LineLogger("user_service.access").log("warning", {"event": "early", "status": 1})
    assert logs == [{"event": "early", "status": 1, "log_level": "warning"}]


def test_a_requests_fields_are_on_its_lines_only_and_a_lines_own_field_wins(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    log = structlog.get_logger("user_service.test")

    async def request(rid: str, pause: float) -> None:
        bound = bind_request(request_id=rid)
        try:
            await asyncio.sleep(pause)  # the other request runs meanwhile, in its own context
            log.info("in", n=rid)
            logging.getLogger("uvicorn.error").warning("stdlib in")
            LineLogger("user_service.access").log("info", {"event": "access", "n": rid})
            log.info("own", request_id="mine")
        finally:
            unbind_request(bound)

    async def both() -> None:
        await asyncio.gather(request("r-a", 0.02), request("r-b", 0.0))

    asyncio.run(both())
    log.info("after")
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    seen = [(x["event"], x.get("request_id")) for x in lines]
    assert seen == [
        ("in", "r-b"),
        ("stdlib in", "r-b"),
        ("access", "r-b"),
        ("own", "mine"),
        ("in", "r-a"),
        ("stdlib in", "r-a"),
        ("access", "r-a"),
        ("own", "mine"),
        ("after", None),
    ]
    assert all(x.get("n") in (None, x.get("request_id")) for x in lines)


def test_a_span_passed_with_the_line_gives_its_ids_instead_of_the_current_ones(restore_logging: None) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    current = NonRecordingSpan(SpanContext(0xA1, 0xB1, False, TraceFlags(1)))
    passed = NonRecordingSpan(SpanContext(0xA2, 0xB2, False, TraceFlags(0)))
    line = LineLogger("user_service.access")
    with trace.use_span(current):
        line.log("info", {"event": "current"})
        line.log("info", {"event": "passed", "_span": passed})
    first, second = (orjson.loads(x) for x in stream.getvalue().splitlines())
    assert (first["trace_id"], first["span_id"], first["trace_sampled"]) == (
        f"{0xA1:032x}",
        f"{0xB1:016x}",
        True,
    )
    assert (second["trace_id"], second["span_id"], second["trace_sampled"]) == (
        f"{0xA2:032x}",
        f"{0xB2:016x}",
        False,
    )
    assert "_span" not in second


def test_an_exception_is_one_field_with_its_traceback_from_structlog_and_the_standard_library(
    restore_logging: None,
) -> None:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError as exc:
        structlog.get_logger("user_service.test").error("failed", exc_info=exc)
        logging.getLogger("uvicorn.error").exception("failed in the standard library")
    structlog.get_logger("user_service.test").info("no exception", exc_info=False)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [x["event"] for x in lines] == ["failed", "failed in the standard library", "no exception"]
    for line in lines[:2]:
        assert line["exception"].startswith("Traceback (most recent call last):")
        assert line["exception"].rstrip().endswith("ZeroDivisionError: division by zero")
    assert all("exc_info" not in x for x in lines)
    assert "exception" not in lines[2]


def test_lines_to_a_file_from_several_threads_are_whole_and_in_each_threads_order(
    restore_logging: None, tmp_path: Path
) -> None:
    """The file's binary buffer takes each line in one write: structlog's, the standard library's
    (tracebacks longer than the text layer's chunk included) and the access line's never interleave."""
    path = tmp_path / "out.log"
    with path.open("w", encoding="utf-8") as stream:
        configure_logging("info", json=True, stream=stream)
        padding = "é" * 6000  # over 8 KiB encoded: the text layer would write it in pieces

        def write(thread: int) -> None:
            for n in range(150):
                structlog.get_logger("user_service.test").info("structlog", thread=thread, n=n)
                logging.getLogger("uvicorn.error").warning("stdlib %s %s %s", thread, n, padding)
                LineLogger("user_service.access").log("info", {"event": "access", "thread": thread, "n": n})

        threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert len(lines) == 4 * 150 * 3

    def written(line: dict[str, Any]) -> tuple[int, str, int]:
        if line["event"].startswith("stdlib"):
            _, thread, n, text = line["event"].split(" ", 3)
            assert text == padding
            return int(thread), "stdlib", int(n)
        return line["thread"], line["event"], line["n"]

    for t in range(4):
        mine = [(kind, n) for thread, kind, n in map(written, lines) if thread == t]
        assert mine == [(kind, n) for n in range(150) for kind in ("structlog", "stdlib", "access")]


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [(0.0012345678, 1.235), (0.25, 250.0), (1e-7, 0.0), (3.0000004, 3000.0), (0.0004995, 0.5)],
)
def test_the_access_line_gives_its_duration_in_ms_to_the_microsecond(
    restore_logging: None, seconds: float, ms: float
) -> None:
    from user_service.presentation.http import access_log

    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    scope = {"client": ("127.0.0.1", 4000)}
    access_log.log_request(
        scope,
        method="GET",
        route="/users/{user_id}",
        path="/users/x",
        status=200,
        duration=seconds,
        quiet=False,
    )
    (line,) = stream.getvalue().splitlines()
    assert orjson.loads(line)["duration_ms"] == ms
    assert f'"duration_ms":{ms},' in line  # the text too: 1.235, never 1.2349999999999999
