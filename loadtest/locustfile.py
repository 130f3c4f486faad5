"""Load test of the users REST API, with every answer checked.

Run with nothing but Locust installed (stdlib + locust, and problem.py beside this file; outside the
service's environment):

    locust -f loadtest/locustfile.py --host http://127.0.0.1:5000            # web UI, Mixed users
    locust -f loadtest/locustfile.py --host URL --headless -u 20 -r 5 -t 1m   # headless
    locust -f loadtest/locustfile.py --host URL Writers                      # one class by name

User classes:

* ``Writers`` create distinct valid users, then rename, change the full name of and delete users they
  created; now and then they check the conflict (409) and validation (422) answers.
* ``Readers`` page through ``GET /users/`` with different limits, offsets, orders and ``deleted``
  filters, and read single users by id and by username. They learn the users from the list pages (and
  create a few seed users first when the table is nearly empty); no id is hard-coded.
* ``Mixed`` (the default when no class is named) does both, one write for every four reads.

Locust runs every non-abstract ``User`` class of a locustfile when none is named on the command line
(or in ``LOCUST_USER_CLASSES``). An ``init`` listener narrows that default to ``Mixed``; naming classes,
or ``--class-picker`` in the web UI, still gives the choice of all three.

Every request uses ``catch_response=True``: the status, the content type and the shape of the body are
checked (required keys and their types, echoed values, list order and filters), so a wrong answer is a
failure in the statistics, not a success. Requests are named by route template.

Pass/fail: at the end of a run the total failure ratio and the 95th percentile are compared with
``--max-error-ratio`` (default 0.01) and ``--max-p95-ms`` (default 250); a breach sets the process exit
code to ``--exit-code-on-error``. ``--summary-file`` writes the verdict as JSON.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from locust import FastHttpUser, between, events
from locust.env import Environment
from locust.runners import WorkerRunner

from problem import problem_errors  # loadtest/problem.py: Locust puts the locustfile's folder on sys.path

log = logging.getLogger("loadtest")

# ---------------------------------------------------------------------------------------------------------
# Test data
# ---------------------------------------------------------------------------------------------------------

#: Usernames written by ``Writers`` start with this prefix (any process); readers never rely on them,
#: because writers rename and delete them while readers run.
WRITER_PREFIX = "ltw"
#: Usernames of the seed users readers create when the table is nearly empty.
SEED_PREFIX = "lts"
#: A random tag per Locust process keeps usernames distinct between processes and runs. It is made
#: on first use, because `--processes` forks workers after this module was imported.
_tag: tuple[int, str, Iterator[int]] | None = None

FIRST_NAMES = ["Anna", "Bob", "José", "Zoë", "Łukasz", "Mary Jane", "Anne-Marie", "D'Arcy", "Søren", "Jean"]
LAST_NAMES = [
    "Smith",
    "O'Brien",
    "García",
    "Nguyen",
    "St. John",
    "Müller",
    "Van der Berg",
    "Okafor",
    "Kowalski",
]
MIDDLE_NAMES = ["Lee", "J.", "Marie", "Ann-Sophie", "Émile"]

SEED_MIN_USERS = 20
LIST_LIMITS = [1, 10, 20, 50, 100]


def new_username(prefix: str = WRITER_PREFIX) -> str:
    global _tag  # noqa: PLW0603 - one tag per process
    if _tag is None or _tag[0] != os.getpid():
        _tag = (os.getpid(), secrets.token_hex(4), itertools.count(1))
    return f"{prefix}{_tag[1]}_{next(_tag[2])}"  # e.g. ltw9f2c01ab_42: <= 32 chars, starts with a letter


def new_full_name() -> dict[str, str]:
    body = {"first_name": random.choice(FIRST_NAMES), "last_name": random.choice(LAST_NAMES)}
    if random.random() < 0.3:
        body["middle_name"] = random.choice(MIDDLE_NAMES)
    return body


def flip_case(username: str) -> str:
    return random.choice([username.upper(), username.lower(), username.swapcase()])


# ---------------------------------------------------------------------------------------------------------
# What this process knows about the users (shared by its greenlets; gevent switches only on I/O)
# ---------------------------------------------------------------------------------------------------------


class Known:
    """Users seen by this process, so reads ask for users that exist and answers can be checked."""

    MAX_IDS = 50_000

    def __init__(self) -> None:
        self.stable: dict[str, str] = {}  # id -> username of live users nobody here changes
        self.stable_ids: list[str] = []
        self.ids: list[str] = []  # every id seen (a deleted user is still found by id)
        self._id_set: set[str] = set()
        self.deleted: set[str] = set()  # ids this process deleted
        # id -> (monotonic time the POST was sent, time its 201 arrived): if one user's 201 came before
        # another's POST was sent, the first was created earlier, and the list must order them so.
        self.created_window: dict[str, tuple[float, float]] = {}
        self.seeding = False

    def saw(self, user: dict[str, Any]) -> None:
        uid = user["id"]
        if uid not in self._id_set and len(self.ids) < self.MAX_IDS:
            self._id_set.add(uid)
            self.ids.append(uid)
        username = user.get("username")
        if (
            not user.get("deleted")
            and isinstance(username, str)
            and not username.lower().startswith(WRITER_PREFIX)
            and uid not in self.stable
            and len(self.stable_ids) < self.MAX_IDS
        ):
            self.stable[uid] = username
            self.stable_ids.append(uid)

    def created(self, user: dict[str, Any], sent: float, received: float) -> None:
        if len(self.created_window) < self.MAX_IDS:
            self.created_window[user["id"]] = (sent, received)
        self.saw(user)


KNOWN = Known()


# ---------------------------------------------------------------------------------------------------------
# Answer checks: each returns a problem description, or None when the answer is right
# ---------------------------------------------------------------------------------------------------------


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def user_problem(user: object) -> str | None:  # noqa: PLR0911 - one return per rule reads best
    """The shape every user has: required keys and types, null fields omitted."""
    if not isinstance(user, dict):
        return f"user is not an object: {user!r:.120}"
    missing = {"id", "first_name", "last_name", "deleted"} - user.keys()
    if missing:
        return f"user lacks {sorted(missing)}: {user!r:.200}"
    if not _is_uuid(user["id"]):
        return f"id is not a UUID: {user['id']!r}"
    for key in ("first_name", "last_name"):
        if not isinstance(user[key], str) or not user[key]:
            return f"{key} is not a non-empty string: {user!r:.200}"
    if "middle_name" in user and (not isinstance(user["middle_name"], str) or not user["middle_name"]):
        return f"middle_name present but not a non-empty string: {user!r:.200}"
    if not isinstance(user["deleted"], bool):
        return f"deleted is not a boolean: {user!r:.200}"
    if user["deleted"]:
        if "username" in user:
            return f"a deleted user still shows a username: {user!r:.200}"
    elif not isinstance(user.get("username"), str) or not user["username"]:
        return f"a live user without a username: {user!r:.200}"
    nulls = [key for key, value in user.items() if value is None]
    if nulls:
        return f"null fields are not omitted: {nulls}"
    return None


def echo_problem(user: dict[str, Any], sent: dict[str, Any]) -> str | None:
    """The user answers with what was sent (names trimmed; only trimmed names are sent)."""
    for key in ("username", "first_name", "last_name"):
        if key in sent and user.get(key) != sent[key]:
            return f"{key} not echoed: got {user.get(key)!r}, sent {sent[key]!r}"
    if "first_name" in sent and user.get("middle_name") != sent.get("middle_name"):
        return f"middle_name not echoed: got {user.get('middle_name')!r}, sent {sent.get('middle_name')!r}"
    if sent.get("user_id") and user["id"] != sent["user_id"]:
        return f"id is not the sent user_id: got {user['id']}, sent {sent['user_id']}"
    return None


def order_problem(users: list[dict[str, Any]], order: str) -> str | None:
    """Users created by this process must appear in creation order (ascending or descending)."""
    seq = users if order == "asc" else list(reversed(users))
    latest_sent, latest_id = float("-inf"), None
    for user in seq:
        window = KNOWN.created_window.get(user["id"])
        if window is None:
            continue
        sent, received = window
        if received < latest_sent:
            return f"list out of creation order (order={order}): {user['id']} was created before {latest_id}"
        if sent > latest_sent:
            latest_sent, latest_id = sent, user["id"]
    return None


def json_body(resp: Any) -> tuple[Any, str | None]:
    try:
        return resp.json(), None
    except (ValueError, TypeError) as exc:
        return None, f"body is not JSON: {exc}; {(resp.text or '')[:120]!r}"


def expect(resp: Any, status: int) -> tuple[Any, str | None]:
    """Check the status code and the content type (an error must be a problem); return the decoded body."""
    if resp.status_code == 0:
        return None, f"no response (connection error): {resp.error}"
    if resp.status_code != status:
        return None, f"HTTP {resp.status_code} (expected {status}): {(resp.text or '')[:200]!r}"
    if status >= 400:
        errors = problem_errors(status, resp.headers.get("content-type") or "", resp.content or b"", status)
        return (None, "not a problem: " + "; ".join(errors)) if errors else json_body(resp)
    content_type = (resp.headers.get("content-type") or "").split(";")[0].strip()
    if content_type != "application/json":
        return None, f"content-type {content_type!r} (expected 'application/json')"
    return json_body(resp)


_logged: dict[str, int] = {}


def verdict(resp: Any, problem: str | None) -> None:
    """Mark the request; the statistics get the kind of problem, the log its first details."""
    if not problem:
        resp.success()
        return
    kind = problem.split(": ", 1)[0]
    resp.failure(kind)
    seen = _logged[kind] = _logged.get(kind, 0) + 1
    if seen <= 5:
        log.warning("%s %s: %s", resp.request_meta["request_type"], resp.request_meta["name"], problem)


# ---------------------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------------------


class ApiUser(FastHttpUser):
    """What every user class shares: its own created users and the helpers around the API."""

    abstract = True
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        # id -> the fields this user last set; only this user changes them.
        self.mine: dict[str, dict[str, Any]] = {}
        self.mine_deleted: list[str] = []

    # ----- calls shared by several tasks ----------------------------------------------------------------

    def create(self, prefix: str = WRITER_PREFIX) -> dict[str, Any] | None:
        sent: dict[str, Any] = {"username": new_username(prefix), **new_full_name()}
        if random.random() < 0.3:
            sent["user_id"] = str(uuid.uuid4())
        started = time.monotonic()
        with self.client.post("/users/", json=sent, name="/users/", catch_response=True) as resp:
            user, problem = expect(resp, 201)
            problem = problem or user_problem(user) or echo_problem(user, sent)
            if not problem:
                if user["deleted"]:
                    problem = "a new user is deleted"
                elif resp.headers.get("location") != f"/users/{user['id']}":
                    problem = f"Location is not /users/{{id}}: {resp.headers.get('location')!r}"
            verdict(resp, problem)
        if problem:
            return None
        KNOWN.created(user, started, time.monotonic())
        if prefix == WRITER_PREFIX:
            self.mine[user["id"]] = sent
            if len(self.mine) > 500:  # forget the oldest; they stay in the table
                self.mine.pop(next(iter(self.mine)))
        return user

    def list_page(
        self, offset: int, limit: int, order: str, deleted: str | None
    ) -> list[dict[str, Any]] | None:
        query = f"offset={offset}&limit={limit}&order={order}"
        if deleted is not None:
            query += f"&deleted={deleted}"
        # Known before the request was sent: a user created while it is in flight may or may not be on it.
        users_known = bool(KNOWN.ids)
        with self.client.get(f"/users/?{query}", name="/users/", catch_response=True) as resp:
            body, problem = expect(resp, 200)
            users: list[dict[str, Any]] = []
            if not problem:
                if not isinstance(body, dict) or not isinstance(body.get("users"), list):
                    problem = f'list is not {{"users": [...]}}: {body!r:.120}'
                else:
                    users = body["users"]
            if not problem and len(users) > limit:
                problem = f"more users than the limit: {len(users)} for limit={limit}"
            for user in users:
                problem = problem or user_problem(user)
            if not problem and len({u["id"] for u in users}) != len(users):
                problem = "the same user twice on one page"
            if not problem and deleted is not None:
                wrong = [u["id"] for u in users if u["deleted"] != (deleted == "true")]
                if wrong:
                    problem = f"deleted={deleted} filter not applied: {len(wrong)} users, e.g. {wrong[0]}"
            if not problem and offset == 0 and deleted is None and not users and users_known:
                problem = "an empty first page although users exist"
            problem = problem or order_problem(users, order)
            verdict(resp, problem)
        if problem:
            return None
        for user in users:
            KNOWN.saw(user)
        return users

    def ensure_readable_users(self) -> None:
        """Learn users from the first pages; create a few seed users when there are too few."""
        if KNOWN.stable_ids or KNOWN.seeding:
            return
        KNOWN.seeding = True
        try:
            self.list_page(0, 100, "desc", "false")
            self.list_page(0, 100, "asc", "false")
            for _ in range(SEED_MIN_USERS - len(KNOWN.stable_ids)):
                self.create(prefix=SEED_PREFIX)
        finally:
            KNOWN.seeding = False


# ----- write tasks ---------------------------------------------------------------------------------------


def pick_mine(user: ApiUser) -> tuple[str, dict[str, Any]] | None:
    """One of the users this simulated client made; with none yet, it creates one instead (None)."""
    if not user.mine:
        user.create()
        return None
    uid = random.choice(list(user.mine))
    return uid, user.mine[uid]


def create_user(user: ApiUser) -> None:
    user.create()


# What a change must leave as it was: (the answer, the user's fields before) -> a problem or None.
Kept = Callable[[dict[str, Any], dict[str, Any]], str | None]


def change(user: ApiUser, what: str, sent: dict[str, Any], kept: Kept) -> dict[str, Any] | None:
    """PUT /users/{id}/`what` of one of this client's users: the answer must be that user with what was
    `sent`, and with what `kept` names unchanged. The user's fields, or None (no user yet, or a wrong
    answer)."""
    picked = pick_mine(user)
    if picked is None:
        return None
    uid, fields = picked
    name = f"/users/{{user_id}}/{what}"
    with user.client.put(f"/users/{uid}/{what}", json=sent, name=name, catch_response=True) as resp:
        body, problem = expect(resp, 200)
        problem = problem or user_problem(body) or echo_problem(body, sent)
        if not problem and body["id"] != uid:
            problem = f"answered for another user: {body['id']}, not {uid}"
        problem = problem or kept(body, fields)
        verdict(resp, problem)
    return None if problem else fields


def change_username(user: ApiUser) -> None:
    sent = {"username": new_username()}

    def full_name_kept(body: dict[str, Any], fields: dict[str, Any]) -> str | None:
        names = ("first_name", "last_name")
        if [body[k] for k in names] == [fields[k] for k in names]:
            return None
        return "renaming changed the full name"

    fields = change(user, "username", sent, full_name_kept)
    if fields is not None:
        fields["username"] = sent["username"]


def change_full_name(user: ApiUser) -> None:
    sent = new_full_name()

    def username_kept(body: dict[str, Any], fields: dict[str, Any]) -> str | None:
        if body.get("username") == fields["username"]:
            return None
        return f"changing the full name changed the username: {body.get('username')!r}"

    fields = change(user, "full-name", sent, username_kept)
    if fields is not None:
        fields.pop("middle_name", None)
        fields.update(sent)


def delete_user(user: ApiUser) -> None:
    picked = pick_mine(user)
    if picked is None:
        return
    uid, _ = picked
    with user.client.delete(f"/users/{uid}", name="/users/{user_id}", catch_response=True) as resp:
        body, problem = expect(resp, 200)
        problem = problem or user_problem(body)
        if not problem and (body["id"] != uid or body["deleted"] is not True):
            problem = f"DELETE did not answer the deleted user: {body!r:.200}"
        verdict(resp, problem)
    if not problem:
        del user.mine[uid]
        KNOWN.deleted.add(uid)
        user.mine_deleted = [*user.mine_deleted[-99:], uid]


def expect_conflict(user: ApiUser) -> None:
    """Must be 409: a taken username (in another case), a taken id, a change to a deleted user."""
    picked = pick_mine(user)
    if picked is None:
        return
    uid, fields = picked
    choice = random.randrange(3) if user.mine_deleted else random.randrange(2)
    if choice == 0:
        sent = {**new_full_name(), "username": fields["username"].upper()}
        ctx = user.client.post("/users/", json=sent, name="/users/ [409 username taken]", catch_response=True)
    elif choice == 1:
        sent = {**new_full_name(), "username": new_username(), "user_id": uid}
        ctx = user.client.post("/users/", json=sent, name="/users/ [409 id taken]", catch_response=True)
    else:
        gone = random.choice(user.mine_deleted)
        ctx = user.client.put(
            f"/users/{gone}/username",
            json={"username": new_username()},
            name="/users/{user_id}/username [409 deleted]",
            catch_response=True,
        )
    with ctx as resp:
        verdict(resp, expect(resp, 409)[1])


def expect_invalid(user: ApiUser) -> None:
    """Input the contract rejects must be 422, never stored."""
    bad = random.choice(
        [
            {"username": "9starts_with_digit", "first_name": "Anna", "last_name": "Smith"},
            {"username": "has-dash", "first_name": "Anna", "last_name": "Smith"},
            {"username": "x" * 33, "first_name": "Anna", "last_name": "Smith"},
            {"username": new_username(), "first_name": "R2D2", "last_name": "Smith"},
            {"username": new_username(), "first_name": "Anna", "last_name": "..."},
            {"username": new_username(), "first_name": "Anna"},
            {"username": new_username(), "first_name": "Anna", "last_name": "Smith", "user_id": "not-a-uuid"},
        ]
    )
    with user.client.post("/users/", json=bad, name="/users/ [422 invalid]", catch_response=True) as resp:
        verdict(resp, expect(resp, 422)[1])


# ----- read tasks ----------------------------------------------------------------------------------------


def list_users(user: ApiUser) -> None:
    user.ensure_readable_users()
    limit = random.choice(LIST_LIMITS)
    known = len(KNOWN.ids)
    offset = 0 if random.random() < 0.5 or known == 0 else random.randrange(0, known)
    order = random.choice(["asc", "desc"])
    deleted = random.choices([None, "false", "true"], weights=[6, 3, 1])[0]
    user.list_page(offset, limit, order, deleted)


def get_by_id(user: ApiUser) -> None:
    user.ensure_readable_users()
    if not KNOWN.ids:
        list_users(user)
        return
    uid = random.choice(KNOWN.ids)
    # What was known before the request was sent: a delete that completes while it is in flight may or
    # may not be seen by it.
    was_deleted, stable_name = uid in KNOWN.deleted, KNOWN.stable.get(uid)
    with user.client.get(f"/users/{uid}", name="/users/{user_id}", catch_response=True) as resp:
        body, problem = expect(resp, 200)
        problem = problem or user_problem(body)
        if not problem and body["id"] != uid:
            problem = f"answered for another user: {body['id']}, not {uid}"
        if not problem and was_deleted and not body["deleted"]:
            problem = f"a deleted user reads as live: {uid}"
        if not problem and stable_name is not None and body.get("username") != stable_name:
            problem = f"username changed unexpectedly: {body.get('username')!r}, was {stable_name!r}"
        verdict(resp, problem)


def get_by_username(user: ApiUser) -> None:
    user.ensure_readable_users()
    if not KNOWN.stable_ids:
        list_users(user)
        return
    uid = random.choice(KNOWN.stable_ids)
    username = KNOWN.stable[uid]
    asked = flip_case(username) if random.random() < 0.3 else username
    with user.client.get(f"/users/@{asked}", name="/users/@{username}", catch_response=True) as resp:
        body, problem = expect(resp, 200)
        problem = problem or user_problem(body)
        if not problem and (body["id"], body.get("username"), body["deleted"]) != (uid, username, False):
            problem = f"wrong user for the username: @{asked} answered {body!r:.200}, expected {uid}"
        verdict(resp, problem)


def get_missing(user: ApiUser) -> None:
    """Users that do not exist are 404 problems, by id and by username."""
    if random.random() < 0.5:
        path, name = f"/users/{uuid.uuid4()}", "/users/{user_id} [404]"
    else:
        path, name = f"/users/@{new_username('nobody')}", "/users/@{username} [404]"
    with user.client.get(path, name=name, catch_response=True) as resp:
        verdict(resp, expect(resp, 404)[1])


WRITE_TASKS: dict[Callable[..., None], int] = {
    create_user: 6,
    change_username: 2,
    change_full_name: 2,
    delete_user: 1,
    expect_conflict: 1,
    expect_invalid: 1,
}
READ_TASKS: dict[Callable[..., None], int] = {list_users: 4, get_by_id: 4, get_by_username: 3, get_missing: 1}


def mix(writes: int, reads: int) -> dict[Callable[..., None], int]:
    """Both task sets, scaled so that writes : reads holds for the picks."""
    write_total, read_total = sum(WRITE_TASKS.values()), sum(READ_TASKS.values())
    mixed = {task: weight * writes * read_total for task, weight in WRITE_TASKS.items()}
    mixed.update({task: weight * reads * write_total for task, weight in READ_TASKS.items()})
    return mixed


class Writers(ApiUser):
    tasks = WRITE_TASKS


class Readers(ApiUser):
    tasks = READ_TASKS


class Mixed(ApiUser):
    tasks = mix(writes=1, reads=4)


# ---------------------------------------------------------------------------------------------------------
# Options, default class, pass/fail thresholds
# ---------------------------------------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("users API load test")
    group.add_argument(
        "--max-error-ratio",
        type=float,
        default=0.01,
        env_var="LOADTEST_MAX_ERROR_RATIO",
        help="Fail the run when failures / requests exceeds this (default 0.01)",
    )
    group.add_argument(
        "--max-p95-ms",
        type=float,
        default=250.0,
        env_var="LOADTEST_MAX_P95_MS",
        help="Fail the run when the 95th percentile of all requests exceeds this (default 250)",
    )
    group.add_argument(
        "--wait-min",
        type=float,
        default=0.2,
        env_var="LOADTEST_WAIT_MIN",
        help="Seconds a user waits between tasks, at least (default 0.2)",
    )
    group.add_argument(
        "--wait-max",
        type=float,
        default=1.0,
        env_var="LOADTEST_WAIT_MAX",
        help="Seconds a user waits between tasks, at most (default 1.0)",
    )
    group.add_argument(
        "--summary-file",
        default="",
        env_var="LOADTEST_SUMMARY_FILE",
        help="Write the verdict (totals, thresholds, pass/fail) to this JSON file",
    )


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    if not options.user_classes and not getattr(options, "class_picker", False):
        environment.user_classes[:] = [Mixed]
    for cls in (Writers, Readers, Mixed):
        cls.wait_time = between(options.wait_min, max(options.wait_min, options.wait_max))


def evaluate(environment: Environment) -> dict[str, Any]:
    options = environment.parsed_options
    total = environment.stats.total
    p95 = total.get_response_time_percentile(0.95) if total.num_requests else 0.0
    runner = environment.runner
    exceptions = len(runner.exceptions) if runner is not None else 0
    reasons = []
    if total.num_requests == 0:
        reasons.append("no requests were made")
    if total.fail_ratio > options.max_error_ratio:
        reasons.append(f"failure ratio {total.fail_ratio:.4f} > {options.max_error_ratio}")
    if p95 > options.max_p95_ms:
        reasons.append(f"p95 {p95:.0f} ms > {options.max_p95_ms:.0f} ms")
    if exceptions:
        reasons.append(f"{exceptions} exceptions in the locustfile")
    return {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "fail_ratio": round(total.fail_ratio, 6),
        "rps": round(total.total_rps, 2),
        "p50_ms": total.get_response_time_percentile(0.5) if total.num_requests else 0.0,
        "p95_ms": p95,
        "p99_ms": total.get_response_time_percentile(0.99) if total.num_requests else 0.0,
        "max_error_ratio": options.max_error_ratio,
        "max_p95_ms": options.max_p95_ms,
        "passed": not reasons,
        "reasons": reasons,
    }


@events.quitting.add_listener
def _thresholds(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return  # a worker's statistics are partial; the master decides
    result = evaluate(environment)
    if result["passed"]:
        log.info(
            "PASS: %s requests, failure ratio %.4f <= %s, p95 %.0f ms <= %.0f ms",
            result["requests"],
            result["fail_ratio"],
            options.max_error_ratio,
            result["p95_ms"],
            options.max_p95_ms,
        )
        environment.process_exit_code = 0
    else:
        log.error("FAIL: %s", "; ".join(result["reasons"]))
        environment.process_exit_code = options.exit_code_on_error
    if options.summary_file:
        directory = os.path.dirname(options.summary_file)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(options.summary_file, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
