"""What an error answer of the users API must be: RFC 9457 problem details.

The content type `application/problem+json`, a JSON object whose `status` is the HTTP status, and a
non-empty `type`, `title` and `detail`. Standard library only: the locustfile (in Locust's own
environment) and the tests both judge answers with it.
"""

from __future__ import annotations

import json

PROBLEM_JSON = "application/problem+json"
MEMBERS = ("type", "title", "detail")


def problem_errors(status: int, content_type: str, body: bytes | str, expected: int | range) -> list[str]:
    """Why an answer is not a problem with the `expected` status (a number, or a range such as all the 4xx):
    empty when it is one."""
    errors = []
    if status not in (expected if isinstance(expected, range) else (expected,)):
        errors.append(f"status {status}, not {expected}")
    if content_type != PROBLEM_JSON:
        return [*errors, f"content type {content_type!r}"]
    try:
        problem = json.loads(body)
    except ValueError:
        return [*errors, f"body is not JSON: {body[:120]!r}"]
    if not isinstance(problem, dict):
        return [*errors, f"body is not an object: {problem!r:.120}"]
    if problem.get("status") != status:
        errors.append(f"body status {problem.get('status')!r}")
    errors += [f"no {key}" for key in MEMBERS if not isinstance(problem.get(key), str) or not problem[key]]
    return errors
