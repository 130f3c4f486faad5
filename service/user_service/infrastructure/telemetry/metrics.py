"""Prometheus metrics, named by the OpenTelemetry semantic conventions as Prometheus spells them.

With one worker per process (the default) the default registry is exported, with exemplars.
With several workers (PROMETHEUS_MULTIPROC_DIR set by `user-service --workers N`) the values
of all workers are combined from their files; prometheus-client has no exemplars in that mode.
uvicorn's supervisor restarts a dead worker without telling anyone, so the files of processes that
are gone are swept (`sweep_dead_processes`) when a worker starts and at every scrape: their counters
and histograms stay (a total never goes backwards), their `live*` gauges go (a killed worker's
in-flight requests and pool connections are no longer counted).

Gauge modes across workers: per-process state (in-flight requests, the pool, the replica monitor, the
relay) is `live*`; what a worker reads from the database at scrape time is `livemostrecent`, the value
of the latest reading, whichever worker made it.
"""

import asyncio
import contextlib
import os
import re
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client import multiprocess as mp
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest
from prometheus_client.registry import Collector

from user_service import __version__
from user_service.application.errors import StorageUnavailable
from user_service.domain.events import USER_EVENTS, UserEvent
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.processes import alive
from user_service.infrastructure.telemetry.loop_metrics import LoopGauge, LoopHistogram

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
MULTIPROCESS = MULTIPROCESS_DIR is not None
UNMATCHED_ROUTE = "unmatched"
_PID_OF_FILE = re.compile(r"_(\d+)\.db$")


def sweep_dead_processes(path: str | None = MULTIPROCESS_DIR) -> set[int]:
    """`mark_process_dead` for every process that wrote a file under `path` and is gone; their pids."""
    if path is None:
        return set()
    pids = {int(m.group(1)) for f in os.listdir(path) if (m := _PID_OF_FILE.search(f))}
    dead = {pid for pid in pids if not alive(pid)}
    for pid in dead:
        with contextlib.suppress(FileNotFoundError):  # another worker's sweep may have been first
            mp.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    return dead


# Series named `_created` double every counter and histogram, and no dashboard or rule reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
if MULTIPROCESS:
    sweep_dead_processes()
    # This process has written nothing yet: live gauges under its pid are a dead worker's whose pid the
    # kernel gave to this one (common in a container's small pid space), and would carry on its values.
    mp.mark_process_dead(os.getpid(), MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]

# Moved by every request: plain numbers written on the event loop's thread (telemetry.loop_metrics).
HTTP_DURATION = LoopHistogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP server requests.",
    ["http_request_method", "http_route", "http_response_status_code"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
    multiprocess=MULTIPROCESS,
)
HTTP_ACTIVE = LoopGauge(
    "http_server_active_requests",
    "Number of active HTTP server requests.",
    ["http_request_method"],
    multiprocess=MULTIPROCESS,
)
HTTP_REFUSED = Counter(
    "http_server_refused_requests",
    "Requests the HTTP server answered itself (400, 408, 431) or cut off (a header timeout), by reason.",
    ["reason"],
)
HTTP_DISCONNECTS = Counter(
    "http_server_client_disconnects",
    "Requests whose client went away before their answer was complete (counted apart from the RED metrics).",
    ["http_request_method", "http_route"],
)
# One counter for every kind of change, labelled by its event's type: an event type added to the domain
# is counted with no edit here, and counting, which runs after the commit, has no lookup that could fail.
USER_EVENTS_COMMITTED = Counter(
    "user_events_committed", "Changes of users that committed, by the type of their event.", ["type"]
)
for _event in USER_EVENTS:  # every known type from 0, so a rate has a series before the first change
    USER_EVENTS_COMMITTED.labels(_event.type)

OUTBOX_PENDING = Gauge(
    "outbox_pending_events",
    "Events written but not yet confirmed by the broker.",
    multiprocess_mode="livemostrecent",
)
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_pending_age_seconds",
    "Age of the oldest unpublished event.",
    multiprocess_mode="livemostrecent",
)
OUTBOX_PUBLISHED = Counter("outbox_published", "Events published and confirmed by the broker.", ["type"])
OUTBOX_PURGED = Counter("outbox_purged", "Published events deleted after the retention period.")
OUTBOX_FAILURES = Counter("outbox_publish_failures", "Publish attempts that the broker did not confirm.")
OUTBOX_PUBLISH_DURATION = Histogram(
    "outbox_publish_duration_seconds",
    "Publishing one batch: publish and broker confirm.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
OUTBOX_COMMIT_TO_CONFIRM = Histogram(
    "outbox_commit_to_confirm_seconds",
    "From the commit of a change to the broker's confirm of its event.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


class RelayGauges:
    """The relay's state, made by the process that runs a relay and by no other: an API process without
    a relay exports no `outbox_broker_connected 0` that would read as a broker outage."""

    def __init__(self) -> None:
        self.broker_connected = Gauge(
            "outbox_broker_connected",
            "1 while the relay holds a broker connection.",
            multiprocess_mode="livemax",
        )
        self.active = Gauge(
            "outbox_relay_active",
            "1 on the instance whose relay holds the lock.",
            multiprocess_mode="livemax",
        )


_relay_gauges: RelayGauges | None = None


def relay_gauges() -> RelayGauges:
    global _relay_gauges  # noqa: PLW0603 - made once, on the first relay of the process
    if _relay_gauges is None:
        _relay_gauges = RelayGauges()
    return _relay_gauges


# db.client.connection.* of the conventions. The count is `db_client_connections`: Prometheus keeps a
# `_count` suffix for histograms and summaries (promtool rejects `db_client_connection_count`).
POOL_NAME = "primary"  # the API's pool on DATABASE_URL; `db.client.connection.pool.name`
DB_CONNECTIONS = Gauge(
    "db_client_connections",
    "Connections of the pool by state.",
    ["db_client_connection_pool_name", "db_client_connection_state"],
    multiprocess_mode="livesum",
)
DB_CONNECTIONS_USED = DB_CONNECTIONS.labels(POOL_NAME, "used")
DB_CONNECTIONS_IDLE = DB_CONNECTIONS.labels(POOL_NAME, "idle")
DB_CONNECTIONS_MAX = Gauge(
    "db_client_connection_max",
    "Most connections the pool may open.",
    ["db_client_connection_pool_name"],
    multiprocess_mode="livesum",
).labels(POOL_NAME)
DB_PENDING = Gauge(
    "db_client_connection_pending_requests",
    "Requests waiting for a connection of the pool.",
    ["db_client_connection_pool_name"],
    multiprocess_mode="livesum",
).labels(POOL_NAME)
# db.client.operation.duration: every statement of the pool's connections when telemetry is on, sampled
# or not (infrastructure/telemetry/sql.py), by statement type and the server that ran it.
DB_OPERATION_DURATION = LoopHistogram(
    "db_client_operation_duration_seconds",
    "Duration of database client operations.",
    ["db_system_name", "db_operation_name", "db_instance_role"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    multiprocess=MULTIPROCESS,
)
DB_READS = Counter(
    "db_client_reads",
    "Reads of the query side, by the server that ran them and why it was that one.",
    ["db_instance_role", "reason"],
)
READS_REPLICA = DB_READS.labels("replica", "fresh")
READS_PRIMARY_ONLY = DB_READS.labels("primary", "no_replica")
READS_PRIMARY_DOWN = DB_READS.labels("primary", "replica_down")
READS_PRIMARY_LAGGING = DB_READS.labels("primary", "replica_lagging")
READS_PRIMARY_CATCHING_UP = DB_READS.labels("primary", "replica_behind_token")
DB_REPLICA_SERVING = Gauge(
    "db_replica_serving",
    "1 while plain reads go to the replica; 0 while they fall back to the primary (or there is none).",
    multiprocess_mode="livemin",
)
DB_REPLICA_STALENESS = Gauge(
    "db_replica_staleness_seconds",
    "At most this many seconds of acknowledged writes were missing on the replica at its last check.",
    multiprocess_mode="livemax",
)
if not MULTIPROCESS:  # in multiprocess mode exposition() adds it once, not once per worker
    Info("user_service_build", "The running version.").info({"version": __version__})


def event_type(event: UserEvent) -> str:
    """The event's published type (`user.created`), or its class's name for one that declares none."""
    return getattr(event, "type", None) or type(event).__name__


_C_co = TypeVar("_C_co", covariant=True)


class _Labelled(Protocol[_C_co]):
    def labels(self, *values: Any) -> _C_co: ...


class Children(Generic[_C_co]):
    """A metric's labelled children, each looked up once: `labels()` validates and locks on every call.
    For label values that are bounded (event types, methods, route templates, statuses, statement types)."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: _Labelled[_C_co]) -> None:
        self._metric = metric
        self._children: dict[tuple[Hashable, ...], _C_co] = {}

    def __call__(self, *values: Hashable) -> _C_co:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)  # labels() makes them strings
        return child


_committed = Children(USER_EVENTS_COMMITTED)


def count_committed(events: Sequence[UserEvent]) -> None:
    """The business counter, moved only by changes that committed."""
    for event in events:
        _committed(event_type(event)).inc()


_OUTBOX_BACKLOG = (
    "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 "
    "FROM outbox WHERE published_at IS NULL"
)


def refresh_pool_gauges(db: Database) -> None:
    pool = db.pool_state()
    DB_CONNECTIONS_USED.set(pool.used)
    DB_CONNECTIONS_IDLE.set(pool.idle)
    DB_CONNECTIONS_MAX.set(pool.max)
    DB_PENDING.set(pool.waiting)


POOL_GAUGE_INTERVAL = 1.0


async def keep_pool_gauges_current(db: Database, interval: float = POOL_GAUGE_INTERVAL) -> None:
    """With several workers, each writes its pool's state every `interval` seconds: a scrape answered by
    one worker sums every worker's pool, not that worker's now and the others' as of their last scrape."""
    while True:
        refresh_pool_gauges(db)
        await asyncio.sleep(interval)


async def refresh_database_gauges(db: Database) -> None:
    """The pool's and the outbox's state, read at scrape time (the relay keeps its own gauges current)."""
    refresh_pool_gauges(db)
    try:
        row = await db.on_side_connection(_OUTBOX_BACKLOG)
    except StorageUnavailable:
        return  # the scrape still answers; the database panels show the outage
    if row is not None:
        OUTBOX_PENDING.set(row[0])
        OUTBOX_OLDEST_AGE.set(row[1])


def exposition(accept: str | None, only: frozenset[str] | None = None) -> tuple[bytes, str]:
    """The metrics text; OpenMetrics (with exemplars) when the scraper asks for it. With `only`, the
    families of those names alone (and the process's own), for a process that serves no API."""
    if MULTIPROCESS:
        sweep_dead_processes()
        combined = CollectorRegistry()
        mp.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        combined.register(_BuildInfo())
        return generate_latest(_only(combined, only)), CONTENT_TYPE_LATEST
    encoder, content_type = choose_encoder(accept or "")
    from prometheus_client import REGISTRY

    return encoder(_only(REGISTRY, only)), content_type


_OWN_FAMILIES = ("process_", "python_", "user_service_build")


def relay_families() -> frozenset[str]:
    """What `user-service relay` exports: its state and what it published, not the API's series (an
    idle pool, an outbox backlog it never reads) at 0."""
    gauges = relay_gauges()
    relays = (
        OUTBOX_PUBLISHED,
        OUTBOX_PURGED,
        OUTBOX_FAILURES,
        OUTBOX_PUBLISH_DURATION,
        OUTBOX_COMMIT_TO_CONFIRM,
        gauges.broker_connected,
        gauges.active,
    )
    return frozenset(m._name for m in relays)


class _Only(Collector):
    def __init__(self, source: CollectorRegistry, names: frozenset[str]) -> None:
        self._source, self._names = source, names

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            if family.name in self._names or family.name.startswith(_OWN_FAMILIES):
                yield family


def _only(source: CollectorRegistry, names: frozenset[str] | None) -> CollectorRegistry:
    if names is None:
        return source
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Only(source, names))
    return registry


class _BuildInfo(Collector):
    """`user_service_build_info` once per scrape in multiprocess mode, written to no worker's file."""

    def collect(self) -> Iterable[Metric]:
        build = GaugeMetricFamily("user_service_build_info", "The running version.", labels=["version"])
        build.add_metric([__version__], 1)
        yield build
