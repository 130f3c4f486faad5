"""InjectedRoute: `FromDishka[...]` parameters from a request scope opened around the endpoint only."""

from collections.abc import AsyncIterator

import httpx
from dishka import FromDishka, Provider, Scope, make_async_container, provide
from fastapi import APIRouter, FastAPI, Request

from user_service.presentation.http.injection import InjectedRoute, use_container


class Shared:
    """Built once for the app."""


class PerRequest:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False


def make_app() -> tuple[FastAPI, list[PerRequest]]:
    made: list[PerRequest] = []

    class Wiring(Provider):
        shared = provide(Shared, scope=Scope.APP)

        @provide(scope=Scope.REQUEST)
        async def per_request(self) -> AsyncIterator[PerRequest]:
            item = PerRequest(len(made))
            made.append(item)
            yield item
            item.closed = True

    router = APIRouter(route_class=InjectedRoute)

    @router.get("/both")
    async def both(shared: FromDishka[Shared], item: FromDishka[PerRequest]) -> dict[str, object]:
        assert not item.closed  # alive while the endpoint runs
        return {"shared": id(shared), "item": item.number}

    @router.get("/own-request/{name}")
    async def own_request(name: str, request: Request, item: FromDishka[PerRequest]) -> dict[str, object]:
        return {"name": name, "path": request.url.path, "item": item.number}

    @router.get("/nothing")
    async def nothing() -> dict[str, object]:
        return {"made": len(made)}

    app = FastAPI()
    app.include_router(router)
    use_container(app, make_async_container(Wiring()))
    return app, made


async def test_each_request_gets_its_own_scope_closed_when_the_endpoint_returns() -> None:
    app, made = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        first = (await client.get("/both")).json()
        second = (await client.get("/both")).json()
    assert first["shared"] == second["shared"]
    assert (first["item"], second["item"]) == (0, 1)
    assert [item.closed for item in made] == [True, True]


async def test_a_route_with_its_own_request_parameter_keeps_it() -> None:
    app, made = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/own-request/ann")
    assert response.json() == {"name": "ann", "path": "/own-request/ann", "item": 0}
    assert made[0].closed


async def test_a_route_without_dependencies_opens_no_scope() -> None:
    app, made = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/nothing")).json() == {"made": 0}
        assert (await client.get("/both")).status_code == 200
    assert len(made) == 1


def test_the_openapi_document_shows_no_injected_parameter() -> None:
    app, _ = make_app()
    operations = app.openapi()["paths"]
    assert "parameters" not in operations["/both"]["get"]
    assert [p["name"] for p in operations["/own-request/{name}"]["get"]["parameters"]] == ["name"]
