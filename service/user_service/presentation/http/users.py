"""The users resource: one function per use case, each a thin translation from HTTP to its handler."""

from typing import Annotated
from uuid import UUID

from dishka import FromDishka
from fastapi import APIRouter, Path, Query, status
from starlette.responses import Response

from user_service.application.commands.change_full_name import ChangeFullName, ChangeFullNameHandler
from user_service.application.commands.change_username import ChangeUsername, ChangeUsernameHandler
from user_service.application.commands.create_user import CreateUser, CreateUserHandler
from user_service.application.commands.delete_user import DeleteUser, DeleteUserHandler
from user_service.application.ports import Order
from user_service.application.queries.get_user import GetUser, GetUserHandler
from user_service.application.queries.get_user_by_username import GetUserByUsername, GetUserByUsernameHandler
from user_service.application.queries.list_users import ListUsers, ListUsersHandler
from user_service.application.read_models import UserView
from user_service.domain.values import USERNAME_MAX
from user_service.presentation.http import conditional, consistency, cursors, idempotency_key, json, openapi
from user_service.presentation.http.media_types import JsonBodyRoute
from user_service.presentation.http.problems import responses
from user_service.presentation.http.schemas import (
    USERNAME_PATTERN,
    ChangeFullNameBody,
    ChangeUsernameBody,
    CreateUserBody,
    UserList,
    UserOut,
)

router = APIRouter(prefix="/users", tags=["users"], route_class=JsonBodyRoute)
USER = openapi.USER_EXAMPLE
DELETED_USER = {k: v for k, v in USER.items() if k != "username"} | {"deleted": True}
UserId = Annotated[UUID, Path(description="The user's id.")]


def _located(view: UserView) -> dict[str, str]:
    """For an answer whose target is not the user itself: the body is the representation of /users/{id},
    which is what its ETag tags."""
    return {"Content-Location": f"/users/{view.id}"}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    description=openapi.describe(
        CreateUserHandler,
        "Send an `Idempotency-Key` to make the request safe to retry (after a timeout, say): the retry "
        "gets the first answer again. Answers 201 with the user, its `Location` and its `ETag`.",
    ),
    responses={
        201: openapi.answer(
            "Created: the user", USER, Location=openapi.LOCATION, ETag=openapi.ETAG, **consistency.WRITTEN
        ),
        **responses(409, 413, 415, 422, 503),
    },
)
async def create_user(
    body: CreateUserBody, handler: FromDishka[CreateUserHandler], key: idempotency_key.IdempotencyKey = None
) -> json.JSON:
    command = CreateUser(
        **body.model_dump(), idempotency_key=None if key is None else idempotency_key.parse(key)
    )
    with consistency.write_token() as written:
        view = await handler(command)
    return json.user(view, status.HTTP_201_CREATED, {"Location": f"/users/{view.id}", **written})


@router.get(
    "",
    response_model=UserList,
    description=openapi.describe(
        ListUsersHandler,
        'Each page links the next in `Link: <…>; rel="next"` while users follow: follow it to walk the list '
        "(a walk by `offset` skips and repeats users when others are created or deleted meanwhile).",
    ),
    responses={
        200: openapi.answer("A page of users", {"users": [USER]}, Link=openapi.LINK),
        **responses(422, 503),
    },
)
async def list_users(
    handler: FromDishka[ListUsersHandler],
    *,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    order: Order = Order.ASC,
    deleted: Annotated[bool | None, Query(description="Only deleted (true) or live (false) users.")] = None,
    after: cursors.After = None,
    token: consistency.Token = None,
) -> json.JSON:
    position = None
    if after is not None:
        if offset:
            raise cursors.offset_with_after(offset)
        position = cursors.decode(after, order, deleted)
    with consistency.reads_after(token):
        page = await handler(ListUsers(offset, limit, order, deleted, position))
    headers = None
    if page.next is not None:
        link = cursors.next_link("/users/", page.next, limit=limit, order=order, deleted=deleted)
        headers = {"Link": link}
    return json.users(page.users, headers)


READ = "With `If-None-Match` naming its current `ETag`, a 304 without a body."
CHANGE = (
    "Send the `ETag` you read in `If-Match` to make the change only if the user is still in that state "
    "(two editors cannot overwrite each other): else a 412 problem, and nothing changes."
)


@router.get(
    "/@{username}",
    response_model=UserOut,
    description=openapi.describe(GetUserByUsernameHandler, READ),
    responses={
        200: openapi.answer("The user", USER, ETag=openapi.ETAG, Content_Location=openapi.CONTENT_LOCATION),
        304: openapi.not_modified(ETag=openapi.ETAG, Content_Location=openapi.CONTENT_LOCATION),
        **responses(404, 422, 503),
    },
)
async def get_user_by_username(
    username: Annotated[str, Path(min_length=1, max_length=USERNAME_MAX, pattern=USERNAME_PATTERN)],
    handler: FromDishka[GetUserByUsernameHandler],
    if_none_match: conditional.IfNoneMatch = None,
    token: consistency.Token = None,
) -> Response:
    with consistency.reads_after(token):
        view = await handler(GetUserByUsername(username))
    headers = _located(view)
    return conditional.not_modified(view, if_none_match, headers) or json.user(view, headers=headers)


@router.get(
    "/{user_id}",
    response_model=UserOut,
    description=openapi.describe(GetUserHandler, READ),
    responses={
        200: openapi.answer("The user", USER, ETag=openapi.ETAG),
        304: openapi.not_modified(ETag=openapi.ETAG),
        **responses(404, 422, 503),
    },
)
async def get_user(
    user_id: UserId,
    handler: FromDishka[GetUserHandler],
    if_none_match: conditional.IfNoneMatch = None,
    token: consistency.Token = None,
) -> Response:
    with consistency.reads_after(token):
        view = await handler(GetUser(user_id))
    return conditional.not_modified(view, if_none_match, {}) or json.user(view)


@router.put(
    "/{user_id}/username",
    response_model=UserOut,
    description=openapi.describe(ChangeUsernameHandler, CHANGE),
    responses={
        200: openapi.answer(
            "The user after the change",
            USER,
            ETag=openapi.ETAG,
            Content_Location=openapi.CONTENT_LOCATION,
            **consistency.WRITTEN,
        ),
        **responses(404, 409, 412, 413, 415, 422, 503),
    },
)
async def change_username(
    user_id: UserId,
    body: ChangeUsernameBody,
    handler: FromDishka[ChangeUsernameHandler],
    if_match: conditional.IfMatch = None,
    if_none_match: conditional.IfNoneMatch = None,
) -> json.JSON:
    condition = conditional.precondition(user_id, if_match, if_none_match)
    with consistency.write_token() as written:
        view = await handler(ChangeUsername(user_id, body.username, condition))
    return json.user(view, headers={**_located(view), **written})


@router.put(
    "/{user_id}/full-name",
    response_model=UserOut,
    description=openapi.describe(ChangeFullNameHandler, CHANGE),
    responses={
        200: openapi.answer(
            "The user after the change",
            USER,
            ETag=openapi.ETAG,
            Content_Location=openapi.CONTENT_LOCATION,
            **consistency.WRITTEN,
        ),
        **responses(404, 409, 412, 413, 415, 422, 503),
    },
)
async def change_full_name(
    user_id: UserId,
    body: ChangeFullNameBody,
    handler: FromDishka[ChangeFullNameHandler],
    if_match: conditional.IfMatch = None,
    if_none_match: conditional.IfNoneMatch = None,
) -> json.JSON:
    condition = conditional.precondition(user_id, if_match, if_none_match)
    with consistency.write_token() as written:
        view = await handler(ChangeFullName(user_id, **body.model_dump(), precondition=condition))
    return json.user(view, headers={**_located(view), **written})


@router.delete(
    "/{user_id}",
    response_model=UserOut,
    description=openapi.describe(DeleteUserHandler, CHANGE),
    responses={
        200: openapi.answer("The deleted user", DELETED_USER, ETag=openapi.ETAG, **consistency.WRITTEN),
        **responses(404, 409, 412, 422, 503),
    },
)
async def delete_user(
    user_id: UserId,
    handler: FromDishka[DeleteUserHandler],
    if_match: conditional.IfMatch = None,
    if_none_match: conditional.IfNoneMatch = None,
) -> json.JSON:
    condition = conditional.precondition(user_id, if_match, if_none_match)
    with consistency.write_token() as written:
        view = await handler(DeleteUser(user_id, condition))
    return json.user(view, headers=written)
