"""Request paths: every path answers with and without a trailing slash, never with a redirect."""

from starlette.types import Scope


def fold_trailing_slash(scope: Scope) -> None:
    path = scope["path"]
    if len(path) > 1 and path.endswith("/"):
        scope["path"] = path.rstrip("/") or "/"
