"""Liveness, readiness and the metrics endpoint."""

from dishka import FromDishka
from fastapi import APIRouter, Request
from starlette.responses import Response

from user_service.application.errors import StorageCause, StorageUnavailable
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.db.replica import ReadRouting
from user_service.infrastructure.outbox.status import RelayStatus
from user_service.infrastructure.telemetry import metrics
from user_service.presentation.http import json, openapi
from user_service.presentation.http.injection import InjectedRoute
from user_service.presentation.http.problems import ERRORS, UNAVAILABLE_DETAILS, problem, responses
from user_service.presentation.http.schemas import Health, Readiness

router = APIRouter(route_class=InjectedRoute, tags=["health"])
_HEALTHY = json.JSON({"status": "ok"})


@router.get(
    "/healthcheck",
    response_model=Health,
    responses={200: openapi.answer("The process is up", {"status": "ok"})},
)
async def liveness() -> Response:
    """The process is up and serving; touches nothing else."""
    return _HEALTHY


_READY = {
    "status": "ok",
    "checks": {"database": "ok", "database_pool": "ok", "database_replica": "lagging", "broker": "ok"},
    "pool": {"used": 1, "idle": 1, "max": 10, "waiting": 0},
    "replica": {
        "state": "lagging",
        "reason": "more than 1 s of writes not replayed",
        "staleness_seconds": 1.4,
        "replayed": "0/3000148",
    },
}


@router.get(
    "/healthcheck/ready",
    response_model=Readiness,
    responses={200: openapi.answer("Ready", _READY), **responses(503)},
)
async def readiness(
    request: Request, db: FromDishka[Database], reads: FromDishka[ReadRouting], relay: FromDishka[RelayStatus]
) -> Response:
    """200 when the service can do its work; 503 when the database is unreachable.

    A saturated pool (every connection serving requests) is 200: the instance is busy, not broken, and
    taking it out of its load balancer would move its load onto the others. The body says so
    (`checks.database_pool: saturated`), as do the pool metrics. So is a replica that is down or
    lagging: reads go to the primary meanwhile (`checks.database_replica`, the `replica` object).
    """
    reachable = await db.reachable()
    pool = db.pool_state()
    checks = {
        "database": "ok" if reachable else "down",
        "database_pool": "saturated" if pool.saturated else "ok",
        "database_replica": reads.state.value,
        "broker": relay.broker.value,
    }
    if not reachable:
        return problem(
            request,
            ERRORS[StorageUnavailable],
            UNAVAILABLE_DETAILS[StorageCause.UNREACHABLE],
            headers={"Retry-After": "1"},
            checks=checks,
            pool=pool._asdict(),
            replica=reads.describe(),
        )
    return json.JSON({"status": "ok", "checks": checks, "pool": pool._asdict(), "replica": reads.describe()})


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request, db: FromDishka[Database]) -> Response:
    await metrics.refresh_database_gauges(db)
    body, content_type = metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
