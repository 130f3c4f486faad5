"""Rules a request must meet before any route sees it; each broken one is a problem, never a guess.

- Host (RFC 9112 §3.2): an HTTP/1.1 request carries exactly one Host field, with a valid value; none or
  several, or one that is not a host[:port], is a 400.
- An encoded slash (`%2F`) in the path is data, not a separator: `/users%2F<id>` names no route here, so
  it is a 404 rather than the route its decoded form would reach.
"""

import re

from starlette.types import Scope

# uri-host [":" port]: a reg-name, an IPv4 address or an IP literal in brackets; empty is allowed (§3.2).
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?")


def refusal(scope: Scope) -> tuple[int, str] | None:
    """(status, detail) when the request breaks a rule, else None."""
    hosts = [value for name, value in scope["headers"] if name == b"host"]
    if len(hosts) > 1:
        return 400, "A request carries one Host header field, not several."
    if not hosts and scope.get("http_version", "1.1") not in ("1.0", "0.9"):
        return 400, "An HTTP/1.1 request carries a Host header field."
    if hosts and _HOST.fullmatch(hosts[0]) is None:
        return 400, "The Host header field is not a host name with an optional port."
    raw_path = scope.get("raw_path")
    if raw_path and b"%2f" in raw_path.lower():
        return 404, f"No route {scope['path']}: an encoded slash is not a path separator."
    return None
