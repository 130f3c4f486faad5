"""InjectedRoute: `FromDishka[...]` parameters from a request scope opened around the endpoint only, and
from the app scope alone when every one lives there."""

from collections.abc import AsyncIterator

import httpx
from dishka import FromDishka, Provider, Scope, make_async_container, provide
from fastapi import APIRouter, FastAPI, Request

from user_service.presentation.http.injection import InjectedRoute, use_container


class Shared:
    """Built once for the app."""


class AlsoShared:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared


class PerRequest:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False


def make_app() -> tuple[FastAPI, list[PerRequest]]:
    made: list[PerRequest] = []

    class Wiring(Provider):
        shared = provide(Shared, scope=Scope.APP)
        also_shared = provide(AlsoShared, scope=Scope.APP)

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

    @router.get("/shared/{name}")
    async def shared_only(
        name: str, shared: FromDishka[Shared], also: FromDishka[AlsoShared]
    ) -> dict[str, object]:
        assert also.shared is shared
        return {"name": name, "shared": id(shared)}

    @router.get("/shared-with-request")
    async def shared_with_request(request: Request, shared: FromDishka[Shared]) -> dict[str, object]:
        return {"path": request.url.path, "shared": id(shared)}

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
    assert "parameters" not in operations["/shared-with-request"]["get"]
    assert [p["name"] for p in operations["/shared/{name}"]["get"]["parameters"]] == ["name"]
    assert [p["name"] for p in operations["/own-request/{name}"]["get"]["parameters"]] == ["name"]


async def test_a_route_with_app_scoped_dependencies_only_gets_the_app_scopes_instances() -> None:
    app, made = make_app()
    opened = 0
    container = app.state.dishka_container
    real_call = type(container).__call__

    def counting(self: object, *args: object, **kwargs: object) -> object:
        nonlocal opened
        opened += 1
        return real_call(self, *args, **kwargs)  # type: ignore[arg-type]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        type(container).__call__ = counting  # type: ignore[method-assign]
        try:
            first = (await client.get("/shared/ann")).json()
            second = (await client.get("/shared/bob")).json()
            own = (await client.get("/shared-with-request")).json()
            assert opened == 0
            both = (await client.get("/both")).json()
            assert opened == 1
        finally:
            type(container).__call__ = real_call  # type: ignore[method-assign]
    assert first == {"name": "ann", "shared": second["shared"]}
    assert own == {"path": "/shared-with-request", "shared": first["shared"]}
    assert both["shared"] == first["shared"] == id(await container.get(Shared))
    assert len(made) == 1
