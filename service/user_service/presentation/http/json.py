"""Responses rendered by orjson straight from the read models: no second validation on the way out."""

from typing import Any

import orjson
from starlette.responses import Response

from user_service.application.read_models import UserView
from user_service.presentation.http.conditional import etag


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def user(view: UserView, status_code: int = 200, headers: dict[str, str] | None = None) -> JSON:
    """The user, with its entity tag: every answer that carries a user carries its `ETag`."""
    return JSON(
        view.representation(), status_code=status_code, headers={"ETag": etag(view), **(headers or {})}
    )


def users(views: list[UserView], headers: dict[str, str] | None = None) -> JSON:
    return JSON({"users": [view.representation() for view in views]}, headers=headers)
