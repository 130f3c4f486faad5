"""Liveness, readiness and the metrics endpoint."""

from dishka import FromDishka
from fastapi import APIRouter, Request
from starlette.responses import Response

from user_service.application.errors import StorageUnavailable
from user_service.infrastructure.db.database import Database
from user_service.infrastructure.outbox.status import RelayStatus
from user_service.infrastructure.telemetry import metrics
from user_service.presentation.http import json
from user_service.presentation.http.injection import InjectedRoute
from user_service.presentation.http.problems import ERRORS, problem, responses
from user_service.presentation.http.schemas import Health, Readiness

router = APIRouter(route_class=InjectedRoute, tags=["health"])
_HEALTHY = json.JSON({"status": "ok"})


@router.get("/healthcheck", response_model=Health)
async def liveness() -> Response:
    """The process is up and serving; touches nothing else."""
    return _HEALTHY


@router.get("/healthcheck/ready", response_model=Readiness, responses=responses(503))
async def readiness(request: Request, db: FromDishka[Database], relay: FromDishka[RelayStatus]) -> Response:
    """200 when the service can do its work; 503 when the database is unreachable."""
    checks = {"database": "ok" if await db.ping() else "down", "broker": relay.broker.value}
    if checks["database"] != "ok":
        return problem(
            request,
            ERRORS[StorageUnavailable],
            "The database is unreachable.",
            headers={"Retry-After": "1"},
            checks=checks,
        )
    return json.JSON({"status": "ok", "checks": checks})


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request, db: FromDishka[Database]) -> Response:
    await metrics.refresh_database_gauges(db)
    body, content_type = metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
