"""Optional header parameters that a request does not send cost it nothing.

FastAPI solves a route's header parameters one by one on every request, present or not: for each, it
works out again from the annotation whether the value is a list, which aliases to look under, and
whether the parameter is a model, before it finds the header missing and takes the default. Measured
here on a bare route, that is about 15 µs a parameter, on every read and change of a user (each declares
two: `If-None-Match` and `X-Consistency-Token`, `If-Match` and `If-None-Match`, or `Idempotency-Key`),
and the requests that send none of them are most of the requests.

A route of this class keeps a second handler, built by FastAPI from the same route without those
parameters, and runs it for a request that sends none of them: the endpoint then gets each one's
default, which is what FastAPI would have given it. A request that sends any of them runs the route's
own handler, so what it sent is read and validated, and its errors reported, exactly as before. The
OpenAPI document is built from the route itself, parameters and all.

It takes effect for a route that is the app's own (`main/app.py` adds its routers' routes so); under
`include_router`, FastAPI builds the handler from its own copy of the route, and the route answers as
any other, solving every parameter.
"""

from collections.abc import Callable, Coroutine
from dataclasses import replace
from inspect import signature
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]  # what a route class's handler is


class AbsentHeadersRoute(APIRoute):
    """A route that skips solving its optional header parameters for a request that sends none of them
    (this module's docstring says why and when)."""

    def get_route_handler(self) -> Handler:
        whole = super().get_route_handler()
        dependant = self.dependant
        # Only a parameter named by its own alias whose default is None, in FastAPI's field and in the
        # function's signature (not `= Header(None)`): absent, FastAPI would pass None, and left out, the
        # function takes None.
        defaults = {name: p.default for name, p in signature(self.endpoint).parameters.items()}
        skippable = [
            field
            for field in dependant.header_params
            if field.field_info.alias
            and not field.field_info.is_required()
            and field.field_info.default is None
            and not field.field_info.validate_default
            and field.name in defaults
            and defaults[field.name] is None
        ]
        if not skippable:
            return whole
        names = frozenset(field.field_info.alias.lower().encode("latin-1") for field in skippable)  # type: ignore[union-attr]
        kept = [field for field in dependant.header_params if all(field is not s for s in skippable)]
        self.dependant = replace(dependant, header_params=kept)
        try:
            without = super().get_route_handler()
        finally:
            self.dependant = dependant

        async def handler(request: Request) -> Response:
            for name, _ in request.scope["headers"]:
                if name in names:
                    return await whole(request)
            return await without(request)

        return handler
