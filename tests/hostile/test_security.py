"""What an error gives away: no secrets, connection strings, SQL or stack traces in any answer, no
password in any log line, and `X-Content-Type-Options: nosniff` on every response."""

import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
from fastapi import FastAPI

from loadtest.problem import PROBLEM_JSON
from loadtest.service_process import ServiceProcess
from loadtest.traffic import Outcome, send
from tests.support.evidence import leaks, log_lines, report
from tests.support.fault_proxy import FaultProxy
from tests.support.private_db import PrivateDatabase, proxied_url

PASSWORD = "Zq8-rT3xV-secret-pw"


@pytest.fixture
def service(private_db: PrivateDatabase, db_proxy: FaultProxy, broker_url: str) -> Iterator[ServiceProcess]:
    env = {
        "DATABASE_URL": proxied_url(db_proxy, private_db.url, password=PASSWORD),
        "BROKER_URL": broker_url,  # the relay runs too, and logs its own database failures
        "OUTBOX_POLL_INTERVAL": "0.2",
        "LOG_LEVEL": "debug",
    }
    db_proxy.cut()  # it starts without its database, and logs that
    with ServiceProcess(env) as process:
        db_proxy.restore()
        yield process


async def every_route(client: httpx.AsyncClient, user_id: str) -> list[Outcome]:
    body = {"username": f"s{uuid.uuid4().hex[:8]}", "first_name": "Sec", "last_name": "Ret"}
    return [
        await send(client, "GET", "/users/"),
        await send(client, "GET", f"/users/{user_id}"),
        await send(client, "GET", "/users/@someone"),
        await send(client, "POST", "/users/", body),
        await send(client, "PUT", f"/users/{user_id}/username", {"username": "renamed"}),
        await send(client, "PUT", f"/users/{user_id}/full-name", {"first_name": "A", "last_name": "B"}),
        await send(client, "DELETE", f"/users/{user_id}"),
    ]


@pytest.mark.broker
async def test_errors_leak_nothing_and_logs_mask_the_password(
    service: ServiceProcess, private_db: PrivateDatabase, db_proxy: FaultProxy
) -> None:
    async with httpx.AsyncClient(base_url=service.url) as client:
        created = await client.post(
            "/users/", json={"username": "victim", "first_name": "V", "last_name": "W"}
        )
        assert created.status_code == 201
        user_id = created.json()["id"]

        # The 500 path: the schema is not what the service expects (a real driver error, with SQL in it).
        await private_db.fetch("ALTER TABLE users RENAME TO users_elsewhere")
        broken = await every_route(client, user_id)
        await private_db.fetch("ALTER TABLE users_elsewhere RENAME TO users")

        # The 503 path: the database is unreachable.
        db_proxy.cut()
        unreachable = await every_route(client, user_id)
        ready = await send(client, "GET", "/healthcheck/ready")
        db_proxy.restore()
        assert (await client.get(f"/users/{user_id}")).status_code == 200

    lines = log_lines(service.log_path)
    text = service.output()
    report(
        "leaks",
        answers_500=sum(o.status == 500 for o in broken),
        answers_503=sum(o.status == 503 for o in unreachable) + (ready.status == 503),
        log_lines=len(lines),
        error_lines=sum(line["level"] == "error" for line in lines),
    )
    assert [f"{o}: {o.problem_errors(500)}" for o in broken if o.problem_errors(500)] == []
    assert [f"{o}: {o.problem_errors(503)}" for o in unreachable if o.problem_errors(503)] == []
    assert ready.problem_errors(503) == []
    for outcome in [*broken, *unreachable, ready]:
        shown = outcome.body.decode() + orjson.dumps(outcome.headers).decode()
        assert leaks(shown, PASSWORD, private_db.name, "users_elsewhere") == [], str(outcome)
    # The logs tell what failed (with the traceback of the 500s), but never the password.
    assert any(line.get("exception") for line in lines), "the 500s were not logged with their traceback"
    assert PASSWORD not in text
    assert ":guest@" not in text  # the broker's password is no better kept than the database's


async def test_every_response_says_nosniff(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = (
        await client.post("/users/", json={"username": "sniff", "first_name": "N", "last_name": "S"})
    ).json()
    user_id = user["id"]
    requests: list[tuple[str, str, object]] = [
        ("GET", "/healthcheck", None),
        ("GET", "/healthcheck/ready", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.json", None),
        ("GET", "/docs", None),
        ("GET", "/users/", None),
        ("GET", "/users/?limit=0", None),
        ("GET", f"/users/{user_id}", None),
        ("GET", f"/users/{uuid.uuid4()}", None),
        ("GET", "/users/not-an-id", None),
        ("GET", "/users/@sniff", None),
        ("POST", "/users/", {"username": "sniff2", "first_name": "N", "last_name": "S"}),
        ("POST", "/users/", {"username": "sniff", "first_name": "N", "last_name": "S"}),
        ("POST", "/users/", b"{" + b" " * 70_000 + b"}"),
        ("POST", "/users/", b"not json"),
        ("POST", "/users/", b'{"username": "\xff"}'),
        ("PUT", f"/users/{user_id}/username", {"username": "sniffy"}),
        ("PUT", f"/users/{user_id}/full-name", {"first_name": "A", "last_name": "B"}),
        ("DELETE", f"/users/{user_id}", None),
        ("DELETE", f"/users/{user_id}", None),
        ("PATCH", "/users/", None),
        ("GET", "/nowhere", None),
        ("OPTIONS", "/users/", None),
        ("HEAD", "/healthcheck", None),
    ]
    answers = []
    for method, path, body in requests:
        if isinstance(body, bytes):
            response = await client.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
        else:
            response = await client.request(method, path, json=body)
        answers.append(response)

    from user_service.application.errors import StorageUnavailable
    from user_service.infrastructure.db.reader import PostgresUserReader

    async def unavailable(self: object, user_id: uuid.UUID) -> None:
        raise StorageUnavailable("database unavailable: ConnectionResetError")

    async def unexpected(self: object, **_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(PostgresUserReader, "get", unavailable)
    monkeypatch.setattr(PostgresUserReader, "list", unexpected)
    answers.append(await client.get(f"/users/{user_id}"))
    answers.append(await client.get("/users/"))

    statuses = sorted({r.status_code for r in answers})
    report("nosniff", responses=len(answers), statuses=statuses)
    assert {200, 201, 404, 405, 409, 413, 422, 500, 503} <= set(statuses)
    missing = [
        f"{r.request.method} {r.request.url.path} {r.status_code}"
        for r in answers
        if r.headers.get("x-content-type-options") != "nosniff"
    ]
    assert missing == []
    assert all(r.headers["content-type"] == PROBLEM_JSON for r in answers if r.status_code >= 400)
