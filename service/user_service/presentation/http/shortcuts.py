"""The three busiest requests in their plainest form, answered without FastAPI's dispatch.

`GET /users/{id}` with no condition, `GET /users/` with at most `limit`, and `POST /users/` of a JSON
body without an `Idempotency-Key`: for these FastAPI spends more CPU on routing, solving the parameters
(each validated by pydantic) and running its exception and exit-stack layers than the work itself takes.
This layer sits inside the request middleware, so the request id, the security headers, HEAD, the body
limit, the span, the metrics and the access line are the same as for any route; it answers those forms
itself, with what `users.get_user`, `users.list_users` and `users.create_user` answer, from the same
handlers:

- `/users/` and a UUID in its canonical form (36 characters, lower-case hex); `/users` (the trailing slash
  is folded before) with no query or only `limit=N`, N written plainly (1-1000, no sign, no leading zero).
  Anything else (upper case, no hyphens, not a UUID, other parameters, a limit out of range) goes to
  FastAPI, which validates it as before;
- neither `If-None-Match` nor `X-Consistency-Token` is present: with either, FastAPI validates and
  applies it;
- a create: `Content-Type: application/json` (any parameters), no content coding, no `Idempotency-Key`,
  and a body that parses as JSON and validates as `CreateUserBody`, the route's body model. Any other
  (no or another media type, a key, a body that does not parse or validate) goes to FastAPI with the body
  replayed, so the 415 and 422 answers are FastAPI's own;
- the route the middleware sees (route label, span name) is the FastAPI route (`/users/{user_id}`,
  `/users`);
- an error a handler raises is answered by the exception handler FastAPI would use for it (404, 503
  problems), and any other error goes up to the request middleware, as from FastAPI.

The routes stay declared in FastAPI (`users.py`), so the OpenAPI document does not change; the tests of
`tests/api/test_shortcut.py` compare both paths' answers.
"""

import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import orjson
from dishka import AsyncContainer
from fastapi import FastAPI, status
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from user_service.application.commands.create_user import CreateUser, CreateUserHandler
from user_service.application.ports import Order
from user_service.application.queries.get_user import GetUser, GetUserHandler
from user_service.application.queries.list_users import ListUsers, ListUsersHandler
from user_service.presentation.http import consistency, cursors, idempotency_key, json, users
from user_service.presentation.http.media_types import JSON, media_type
from user_service.presentation.http.schemas import CreateUserBody

_BY_ID_PREFIX = "/users/"
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PLAIN_LIMIT = re.compile(rb"(?:limit=([1-9][0-9]{0,3}))?")
_MAX_LIMIT = 1000
# Header fields that make the read something else than the plain one (lower case, as ASGI has them).
_CONDITIONS = frozenset({b"if-none-match", consistency.HEADER.lower().encode()})
BY_ID, LIST, CREATE = "/users/{user_id}", "/users", "POST /users"
# A create with one of these is FastAPI's to answer (a content coding other than identity, a key).
_NOT_PLAIN_CREATE = frozenset({b"content-encoding", idempotency_key.HEADER.lower().encode()})

H = TypeVar("H")


def _route(path: str, method: str = "GET") -> APIRoute:
    """The route FastAPI puts in the scope: the one declared on the users router."""
    return next(
        r
        for r in users.router.routes
        if isinstance(r, APIRoute) and r.path == path and method in (r.methods or ())
    )


def _replaying(received: list[Message], receive: Receive) -> Receive:
    """`receive` that gives what was received already again first."""
    pending = list(received)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


class UserReadShortcuts:
    """ASGI: the plain reads answered here, everything else passed to `app`."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._routes: dict[str, APIRoute] = {}
        self._handlers: dict[type[Any], Any] = {}
        self._per_request: set[type[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if scope["method"] == "POST" and path == LIST:
            await self._create(scope, receive, send)
            return
        if scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
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

    async def _create(self, scope: Scope, receive: Receive, send: Send) -> None:
        plain_json = False
        for name, value in scope["headers"]:
            if name in _NOT_PLAIN_CREATE:
                if name != b"content-encoding" or value.strip().lower() not in (b"", b"identity"):
                    await self.app(scope, receive, send)
                    return
            elif name == b"content-type":
                plain_json = media_type(value.decode("latin-1")) == JSON
        if not plain_json:
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        try:
            while True:
                message = await receive()
                received.append(message)
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
            body = None
            if message["type"] == "http.request":
                with contextlib.suppress(orjson.JSONDecodeError, ValidationError):
                    body = CreateUserBody.model_validate(
                        orjson.loads(b"".join(m.get("body", b"") for m in received))
                    )
        except Exception as exc:  # the body limit's 413, as FastAPI's route would have met it
            await self._answer_error(scope, receive, send, exc)
            return
        if body is None:
            await self.app(scope, _replaying(received, receive), send)
            return
        scope["path_params"] = {}
        scope["route"] = self._routes.get(CREATE) or self._routes.setdefault(CREATE, _route(LIST, "POST"))
        scope["endpoint"] = scope["route"].endpoint
        command = CreateUser(**body.model_dump(), idempotency_key=None)
        try:
            with consistency.write_token() as written:
                view = await self._call(CreateUserHandler, lambda h: h(command))
        except Exception as exc:
            await self._answer_error(scope, receive, send, exc)
            return
        response = json.user(view, status.HTTP_201_CREATED, {"Location": f"/users/{view.id}", **written})
        await response(scope, receive, send)

    async def _answer_error(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        handler = self._exception_handler(exc)
        if handler is None:
            raise exc
        response = await handler(Request(scope, receive), exc)
        await response(scope, receive, send)

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
            await self._answer_error(scope, receive, send, exc)
            return
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
