"""`GET /users/{id}` in its plainest form, answered without FastAPI's dispatch.

The busiest read of the API is a user by its id with no condition: no `If-None-Match`, no
`X-Consistency-Token`. FastAPI spends more CPU on routing it, solving its parameters (a path UUID and two
optional header fields, each validated by pydantic) and running its exception and exit-stack layers than
the read itself takes. This layer sits inside the request middleware, so the request id, the security
headers, HEAD, the span, the metrics and the access line are the same as for any route; it answers that
one form itself, with what `users.get_user` answers, from the same handler:

- the path is `/users/` and a UUID in its canonical form (36 characters, lower-case hex): anything else
  (upper case, no hyphens, not a UUID, a trailing segment) goes to FastAPI, which validates it as before;
- neither conditional nor consistency header is present: with either, FastAPI validates and applies it;
- the route seen by the middleware (route label, span name) is the FastAPI route `/users/{user_id}`;
- an error the handler raises is answered by the exception handler FastAPI would use for it (404, 503
  problems), and any other error goes up to the request middleware, as from FastAPI.

The route stays declared in FastAPI (`users.py`), so the OpenAPI document does not change.
"""

import re
from typing import Any
from uuid import UUID

from dishka import AsyncContainer
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from user_service.application.queries.get_user import GetUser, GetUserHandler
from user_service.application.read_models import UserView
from user_service.presentation.http import consistency, json, users

_PREFIX = "/users/"
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Header fields that make the read something else than the plain one (lower case, as ASGI has them).
_CONDITIONS = frozenset({b"if-none-match", consistency.HEADER.lower().encode()})
ROUTE_PATH = "/users/{user_id}"


class UserByIdShortcut:
    """ASGI: the plain `GET /users/{id}` answered here, everything else passed to `app`."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._route: APIRoute | None = None
        self._handler: GetUserHandler | None = None
        self._per_request = False

    def _plain(self, scope: Scope) -> str | None:
        """The id's text when the request is the plain read, else None."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        if len(path) != 43 or not path.startswith(_PREFIX) or not _CANONICAL_UUID.fullmatch(path, 7):
            return None
        if any(name in _CONDITIONS for name, _ in scope["headers"]):
            return None
        return path[7:]

    def _route_of(self) -> APIRoute:
        if self._route is None:
            # The route FastAPI puts in the scope: the one declared on the users router.
            self._route = next(
                r
                for r in users.router.routes
                if isinstance(r, APIRoute) and r.path == ROUTE_PATH and "GET" in (r.methods or ())
            )
        return self._route

    async def _read(self, user_id: UUID) -> UserView:
        """The handler is app-scoped (main.ioc): resolved once; one provided per request (a test's
        provider, say) is resolved in a request scope each time, as the route would."""
        container: AsyncContainer = self.api.state.dishka_container
        if self._handler is None and not self._per_request:
            try:
                self._handler = await container.get(GetUserHandler)
            except Exception:
                self._per_request = True
        if self._handler is not None:
            return await self._handler(GetUser(user_id))
        async with container() as request_container:
            handler = await request_container.get(GetUserHandler)
            return await handler(GetUser(user_id))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = self._plain(scope)
        if text is None:
            await self.app(scope, receive, send)
            return
        route = self._route_of()
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {"user_id": text}
        try:
            with consistency.reads_after(None):
                view = await self._read(UUID(text))
        except Exception as exc:
            answer = self._exception_handler(exc)
            if answer is None:
                raise
            response = await answer(Request(scope, receive), exc)
        else:
            response = json.user(view)
        await response(scope, receive, send)

    def _exception_handler(self, exc: Exception) -> Any:
        """The app's handler for `exc`, by its class's MRO (as Starlette's exception layer finds it)."""
        handlers = self.api.exception_handlers
        return next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
