"""The users resource: one function per use case, each a thin translation from HTTP to its handler."""

from typing import Annotated
from uuid import UUID

from dishka import FromDishka
from fastapi import APIRouter, Path, Query, status

from user_service.application.commands.change_full_name import ChangeFullName, ChangeFullNameHandler
from user_service.application.commands.change_username import ChangeUsername, ChangeUsernameHandler
from user_service.application.commands.create_user import CreateUser, CreateUserHandler
from user_service.application.commands.delete_user import DeleteUser, DeleteUserHandler
from user_service.application.ports import Order
from user_service.application.queries.get_user import GetUser, GetUserHandler
from user_service.application.queries.get_user_by_username import GetUserByUsername, GetUserByUsernameHandler
from user_service.application.queries.list_users import ListUsers, ListUsersHandler
from user_service.domain.values import USERNAME_MAX
from user_service.presentation.http import json
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
UserId = Annotated[UUID, Path(description="The user's id.")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses={
        201: {"headers": {"Location": {"description": "/users/{id}", "schema": {"type": "string"}}}},
        **responses(409, 413, 415, 422, 503),
    },
)
async def create_user(body: CreateUserBody, handler: FromDishka[CreateUserHandler]) -> json.JSON:
    view = await handler(CreateUser(**body.model_dump()))
    return json.user(view, status.HTTP_201_CREATED, {"Location": f"/users/{view.id}"})


@router.get("", response_model=UserList, responses=responses(422, 503))
async def list_users(
    handler: FromDishka[ListUsersHandler],
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    order: Order = Order.ASC,
    deleted: Annotated[bool | None, Query(description="Only deleted (true) or live (false) users.")] = None,
) -> json.JSON:
    return json.users(await handler(ListUsers(offset, limit, order, deleted)))


@router.get(
    "/@{username}",
    response_model=UserOut,
    responses=responses(404, 422, 503),
)
async def get_user_by_username(
    username: Annotated[str, Path(min_length=1, max_length=USERNAME_MAX, pattern=USERNAME_PATTERN)],
    handler: FromDishka[GetUserByUsernameHandler],
) -> json.JSON:
    return json.user(await handler(GetUserByUsername(username)))


@router.get("/{user_id}", response_model=UserOut, responses=responses(404, 422, 503))
async def get_user(user_id: UserId, handler: FromDishka[GetUserHandler]) -> json.JSON:
    return json.user(await handler(GetUser(user_id)))


@router.put(
    "/{user_id}/username",
    response_model=UserOut,
    responses=responses(404, 409, 413, 415, 422, 503),
)
async def change_username(
    user_id: UserId, body: ChangeUsernameBody, handler: FromDishka[ChangeUsernameHandler]
) -> json.JSON:
    return json.user(await handler(ChangeUsername(user_id, body.username)))


@router.put(
    "/{user_id}/full-name",
    response_model=UserOut,
    responses=responses(404, 409, 413, 415, 422, 503),
)
async def change_full_name(
    user_id: UserId, body: ChangeFullNameBody, handler: FromDishka[ChangeFullNameHandler]
) -> json.JSON:
    return json.user(await handler(ChangeFullName(user_id, **body.model_dump())))


@router.delete(
    "/{user_id}",
    response_model=UserOut,
    responses=responses(404, 409, 422, 503),
)
async def delete_user(user_id: UserId, handler: FromDishka[DeleteUserHandler]) -> json.JSON:
    return json.user(await handler(DeleteUser(user_id)))
