"""The two busiest reads in their plainest form, answered without FastAPI's dispatch.

`GET /users/{id}` with no condition and `GET /users/` with at most `limit`: for these FastAPI spends more
CPU on routing, solving the parameters (each validated by pydantic) and running its exception and
exit-stack layers than the read itself takes. This layer sits inside the request middleware, so the
request id, the security headers, HEAD, the span, the metrics and the access line are the same as for any
route; it answers those forms itself, with what `users.get_user` and `users.list_users` answer, from the
same handlers:

- `/users/` and a UUID in its canonical form (36 characters, lower-case hex); `/users` (the trailing slash
  is folded before) with no query or only `limit=N`, N written plainly (1-1000, no sign, no leading zero).
  Anything else (upper case, no hyphens, not a UUID, other parameters, a limit out of range) goes to
  FastAPI, which validates it as before;
- neither `If-None-Match` nor `X-Consistency-Token` is present: with either, FastAPI validates and
  applies it;
- the route the middleware sees (route label, span name) is the FastAPI route (`/users/{user_id}`,
  `/users`);
- an error a handler raises is answered by the exception handler FastAPI would use for it (404, 503
  problems), and any other error goes up to the request middleware, as from FastAPI.

The routes stay declared in FastAPI (`users.py`), so the OpenAPI document does not change; the tests of
`tests/api/test_shortcut.py` compare both paths' answers.
"""

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

from dishka import AsyncContainer
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from user_service.application.ports import Order
from user_service.application.queries.get_user import GetUser, GetUserHandler
from user_service.application.queries.list_users import ListUsers, ListUsersHandler
from user_service.presentation.http import consistency, cursors, json, users

_BY_ID_PREFIX = "/users/"
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PLAIN_LIMIT = re.compile(rb"(?:limit=([1-9][0-9]{0,3}))?")
_MAX_LIMIT = 1000
# Header fields that make the read something else than the plain one (lower case, as ASGI has them).
_CONDITIONS = frozenset({b"if-none-match", consistency.HEADER.lower().encode()})
BY_ID, LIST = "/users/{user_id}", "/users"

H = TypeVar("H")


def _route(path: str) -> APIRoute:
    """The route FastAPI puts in the scope: the one declared on the users router."""
    return next(
        r
        for r in users.router.routes
        if isinstance(r, APIRoute) and r.path == path and "GET" in (r.methods or ())
    )


class UserReadShortcuts:
    """ASGI: the plain reads answered here, everything else passed to `app`."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._routes: dict[str, APIRoute] = {}
        self._handlers: dict[type[Any], Any] = {}
        self._per_request: set[type[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if len(path) == 43 and path.startswith(_BY_ID_PREFIX) and _CANONICAL_UUID.fullmatch(path, 7):
            if self._plain(scope):
                await self._answer(scope, receive, send, BY_ID, {"user_id": path[7:]})
                return
        elif path == LIST and (match := _PLAIN_LIMIT.fullmatch(scope["query_string"])):
            limit = _MAX_LIMIT if match[1] is None else int(match[1])
            if limit <= _MAX_LIMIT and self._plain(scope):
                await self._answer(scope, receive, send, LIST, {}, limit=limit)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _plain(scope: Scope) -> bool:
        return not any(name in _CONDITIONS for name, _ in scope["headers"])

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: str,
        params: dict[str, str],
        *,
        limit: int = 0,
    ) -> None:
        scope["path_params"] = params
        scope["route"] = self._routes.get(route) or self._routes.setdefault(route, _route(route))
        scope["endpoint"] = scope["route"].endpoint
        try:
            with consistency.reads_after(None):
                if route == BY_ID:
                    response = await self._by_id(UUID(params["user_id"]))
                else:
                    response = await self._page(limit)
        except Exception as exc:
            handler = self._exception_handler(exc)
            if handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
        await response(scope, receive, send)

    async def _by_id(self, user_id: UUID) -> Response:
        handler = self._handlers.get(GetUserHandler)
        if handler is not None:
            view = await handler(GetUser(user_id))
        else:
            view = await self._call(GetUserHandler, lambda h: h(GetUser(user_id)))
        return json.user(view)

    async def _page(self, limit: int) -> Response:
        page = await self._call(ListUsersHandler, lambda h: h(ListUsers(0, limit, Order.ASC, None, None)))
        headers = None
        if page.next is not None:
            link = cursors.next_link("/users/", page.next, limit=limit, order=Order.ASC, deleted=None)
            headers = {"Link": link}
        return json.users(page.users, headers)

    async def _call(self, kind: type[H], run: Callable[[H], Awaitable[Any]]) -> Any:
        """`run` with the handler of `kind`. The handlers are app-scoped (main.ioc): resolved once; one
        provided per request (a test's provider, say) is resolved in a request scope each time, as the
        route would."""
        container: AsyncContainer = self.api.state.dishka_container
        if kind not in self._handlers and kind not in self._per_request:
            try:
                self._handlers[kind] = await container.get(kind)
            except Exception:
                self._per_request.add(kind)
        if kind in self._handlers:
            return await run(self._handlers[kind])
        async with container() as request_container:
            return await run(await request_container.get(kind))

    def _exception_handler(self, exc: Exception) -> Any:
        """The app's handler for `exc`, by its class's MRO (as Starlette's exception layer finds it)."""
        handlers = self.api.exception_handlers
        return next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
