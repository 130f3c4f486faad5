"""Prometheus metrics, named by the OpenTelemetry semantic conventions as Prometheus spells them.

With one worker per process (the default) the default registry is exported, with exemplars.
With several workers (PROMETHEUS_MULTIPROC_DIR set by `user-service --workers N`) the values
of all workers are summed from their files; prometheus-client has no exemplars in that mode.
"""

import os
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client import multiprocess as mp
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest

from user_service import __version__
from user_service.application.errors import StorageUnavailable
from user_service.domain.events import FullNameChanged, UserCreated, UserDeleted, UserEvent, UsernameChanged
from user_service.infrastructure.db.database import Database

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
UNMATCHED_ROUTE = "unmatched"

HTTP_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP server requests.",
    ["http_request_method", "http_route", "http_response_status_code"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
)
HTTP_ACTIVE = Gauge(
    "http_server_active_requests",
    "Number of active HTTP server requests.",
    ["http_request_method"],
    multiprocess_mode="livesum",
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
USERS_CREATED = Counter("users_created", "Users created.")
USERS_DELETED = Counter("users_deleted", "Users deleted.")
USERNAME_CHANGED = Counter("users_username_changed", "Usernames changed.")
FULL_NAME_CHANGED = Counter("users_full_name_changed", "Full names changed.")
_EVENT_COUNTERS: dict[type[UserEvent], Counter] = {
    UserCreated: USERS_CREATED,
    UserDeleted: USERS_DELETED,
    UsernameChanged: USERNAME_CHANGED,
    FullNameChanged: FULL_NAME_CHANGED,
}

OUTBOX_PENDING = Gauge(
    "outbox_pending_events", "Events written but not yet confirmed by the broker.", multiprocess_mode="max"
)
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_pending_age_seconds", "Age of the oldest unpublished event.", multiprocess_mode="max"
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
OUTBOX_BROKER_CONNECTED = Gauge(
    "outbox_broker_connected", "1 while the relay holds a broker connection.", multiprocess_mode="max"
)
OUTBOX_RELAY_ACTIVE = Gauge(
    "outbox_relay_active", "1 on the instance whose relay holds the lock.", multiprocess_mode="max"
)
DB_CONNECTIONS = Gauge(
    "db_client_connection_count", "Connections of the pool by state.", ["state"], multiprocess_mode="livesum"
)
DB_CONNECTIONS_MAX = Gauge(
    "db_client_connection_max", "Most connections the pool may open.", multiprocess_mode="livesum"
)
DB_PENDING = Gauge(
    "db_client_connection_pending_requests",
    "Requests waiting for a connection of the pool.",
    multiprocess_mode="livesum",
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
    multiprocess_mode="min",
)
DB_REPLICA_STALENESS = Gauge(
    "db_replica_staleness_seconds",
    "At most this many seconds of acknowledged writes were missing on the replica at its last check.",
    multiprocess_mode="max",
)
if not MULTIPROCESS:  # in multiprocess mode exposition() adds it once, not once per worker
    Info("user_service_build", "The running version.").info({"version": __version__})


def count_committed(events: Sequence[UserEvent]) -> None:
    """Business counters, moved only by changes that committed."""
    for event in events:
        _EVENT_COUNTERS[type(event)].inc()


_OUTBOX_BACKLOG = (
    "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 "
    "FROM outbox WHERE published_at IS NULL"
)


async def refresh_database_gauges(db: Database) -> None:
    """The pool's and the outbox's state, read at scrape time (the relay keeps its own gauges current)."""
    pool = db.pool_state()
    DB_CONNECTIONS.labels("used").set(pool.used)
    DB_CONNECTIONS.labels("idle").set(pool.idle)
    DB_CONNECTIONS_MAX.set(pool.max)
    DB_PENDING.set(pool.waiting)
    try:
        row = await db.on_side_connection(_OUTBOX_BACKLOG)
    except StorageUnavailable:
        return  # the scrape still answers; the database panels show the outage
    if row is not None:
        OUTBOX_PENDING.set(row[0])
        OUTBOX_OLDEST_AGE.set(row[1])


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The metrics text; OpenMetrics (with exemplars) when the scraper asks for it."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        build = Gauge("user_service_build_info", "The running version.", ["version"], registry=registry)
        build.labels(__version__).set(1)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    encoder, content_type = choose_encoder(accept or "")
    from prometheus_client import REGISTRY

    return encoder(REGISTRY), content_type
