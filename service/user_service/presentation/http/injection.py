"""`FromDishka[...]` parameters of a route, resolved from the app's dishka container.

dishka's stock FastAPI integration adds an ASGI middleware that builds a `Request` and opens a request
scope for every request, probes and 404s included, and closes it after the response is sent; measured
here, that is about 50 µs of CPU per request, a sixth of a `GET /users/{id}`. This route class opens the
request scope around the endpoint call only: what a route asks for is built when the route runs, and
finalized as soon as it returns, before the response goes out. Handlers commit explicitly, so nothing
waits on that finalization.

A route whose every dependency lives in the app scope (the read handlers: main.ioc) needs no request
scope at all: on its first call they are resolved from the app container, and from then on passed as
they are, the same instances the container would give (app-scoped means one per container). A route with
any request-scoped dependency (a unit of work) opens its request scope on every call, as above.
"""

from collections.abc import Callable
from inspect import Parameter, signature
from typing import Any, get_type_hints

from dishka import AsyncContainer
from dishka.exceptions import NoFactoryError
from dishka.integrations.base import default_parse_dependency, wrap_injection
from fastapi import FastAPI, Request

from user_service.presentation.http.absent_headers import AbsentHeadersRoute

_REQUEST = Parameter(name="___dishka_request", annotation=Request, kind=Parameter.KEYWORD_ONLY)


def _container_of(request_param: str) -> Callable[[Any, dict[str, Any]], AsyncContainer]:
    def app_container(_: Any, kwargs: dict[str, Any]) -> AsyncContainer:
        container: AsyncContainer = kwargs[request_param].app.state.dishka_container
        return container

    return app_container


def _app_scoped_first(
    endpoint: Callable[..., Any], scoped: Callable[..., Any], request_param: str, added: bool
) -> Callable[..., Any]:
    """`endpoint` called with its dependencies from the app scope when they all live there (resolved
    once per container), else `scoped`, dishka's injection with a request scope per call."""
    hints = get_type_hints(endpoint, include_extras=True)
    parameters = signature(endpoint).parameters
    dependencies = {
        name: key
        for name, parameter in parameters.items()
        if (key := default_parse_dependency(parameter, hints.get(name, Any))) is not None
    }
    if not dependencies:
        return scoped
    resolved: list[Any] = [None, None]  # [container, its instances by parameter name, or None]

    async def injected(*args: Any, **kwargs: Any) -> Any:
        container: AsyncContainer = kwargs[request_param].app.state.dishka_container
        if resolved[0] is not container:
            try:
                instances = {
                    name: await container.get(key.type_hint, component=key.component)
                    for name, key in dependencies.items()
                }
            except NoFactoryError:  # something the route needs is request-scoped
                instances = None
            resolved[:] = [container, instances]
        instances = resolved[1]
        if instances is None:
            return await scoped(*args, **kwargs)
        if added:
            del kwargs[request_param]
        return await endpoint(*args, **kwargs, **instances)

    for attribute in ("__signature__", "__annotations__", "__name__", "__qualname__", "__doc__"):
        setattr(injected, attribute, getattr(scoped, attribute))
    injected.__module__ = scoped.__module__
    return injected


class InjectedRoute(AbsentHeadersRoute):
    """A route whose `FromDishka[...]` parameters come from the app's container: from its app scope
    when every one lives there, else from a request scope opened around the call."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        hints = get_type_hints(endpoint)
        # FastAPI hands the request to one parameter only: the endpoint's own, when it has one.
        own = next((name for name in signature(endpoint).parameters if hints.get(name) is Request), None)
        request_param = own or _REQUEST.name
        scoped = wrap_injection(
            func=endpoint,
            is_async=True,
            manage_scope=True,
            additional_params=[] if own else [_REQUEST],
            container_getter=_container_of(request_param),
        )
        super().__init__(path, _app_scoped_first(endpoint, scoped, request_param, own is None), **kwargs)


def use_container(app: FastAPI, container: AsyncContainer) -> None:
    """The container `InjectedRoute` routes of `app` resolve from."""
    app.state.dishka_container = container
