"""AbsentHeadersRoute: a request that sends none of a route's optional header parameters skips solving
them and gets their defaults; one that sends any is read, validated and refused exactly as FastAPI
does; the OpenAPI document keeps every parameter."""

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Header
from fastapi.dependencies import utils as fastapi_utils
from fastapi.routing import APIRoute

from user_service.presentation.http.absent_headers import AbsentHeadersRoute

Tag = Annotated[str | None, Header(alias="X-Tag", pattern=r"^[a-z]+$")]
Other = Annotated[str | None, Header(alias="X-Other")]
Required = Annotated[str, Header(alias="X-Required")]


def make_app(route_class: type[Any]) -> FastAPI:
    router = APIRouter(route_class=route_class)

    @router.get("/items/{number}")
    async def item(number: int, tag: Tag = None, other: Other = None) -> dict[str, object]:
        return {"number": number, "tag": tag, "other": other}

    @router.get("/old-style")
    async def old_style(tag: str | None = Header(None, alias="X-Tag")) -> dict[str, object]:
        return {"tag": tag}

    @router.get("/required")
    async def required(needed: Required, tag: Tag = None) -> dict[str, object]:
        return {"needed": needed, "tag": tag}

    app = FastAPI()
    app.router.routes.extend(router.routes)  # as the service takes its routers' routes
    return app


async def answers(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(path, headers=headers)
    return response.status_code, response.json()


CASES = [
    ("/items/7", None),
    ("/items/7", {"X-Tag": "abc"}),
    ("/items/7", {"x-other": "Anything"}),
    ("/items/7", {"X-Tag": "ABC"}),  # fails the pattern: 422
    ("/items/seven", {"X-Tag": "ABC"}),  # two errors, the path's and the header's
    ("/items/seven", None),
    ("/old-style", None),  # its Python default is a Header: never skipped
    ("/old-style", {"X-Tag": "abc"}),
    ("/required", {"X-Required": "yes"}),
    ("/required", None),  # a required header is never skipped: 422
    ("/required", {"X-Tag": "1"}),
]


@pytest.mark.parametrize(("path", "headers"), CASES)
async def test_answers_as_fastapi_does(path: str, headers: dict[str, str] | None) -> None:
    skipping = await answers(make_app(AbsentHeadersRoute), path, headers)
    assert skipping == await answers(make_app(APIRoute), path, headers)


async def test_absent_headers_are_not_solved(monkeypatch: pytest.MonkeyPatch) -> None:
    solved: list[list[str]] = []
    original = fastapi_utils.request_params_to_args

    def recording(fields: Any, received: Any) -> Any:
        solved.append([field.alias for field in fields])
        return original(fields, received)

    monkeypatch.setattr(fastapi_utils, "request_params_to_args", recording)
    app = make_app(AbsentHeadersRoute)

    assert await answers(app, "/items/7") == (200, {"number": 7, "tag": None, "other": None})
    assert not any("X-Tag" in names for names in solved)

    solved.clear()
    assert await answers(app, "/items/7", {"X-Other": "o"}) == (200, {"number": 7, "tag": None, "other": "o"})
    assert ["X-Tag", "X-Other"] in solved


async def test_openapi_keeps_every_parameter() -> None:
    assert make_app(AbsentHeadersRoute).openapi() == make_app(APIRoute).openapi()
