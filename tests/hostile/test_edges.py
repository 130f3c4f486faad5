"""The edges a public deployment meets first, on a real socket against the service process: header floods,
trickling bodies, clients that leave, HEAD, encoded slashes, Host rules, WebSocket handshakes and the
server's own answers. Each gets a clean answer (a problem with the headers of every answer) or a closed
connection, memory stays flat, and everyone else is served meanwhile."""

import base64
import contextlib
import os
import re
import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from loadtest.service_process import ServiceProcess
from tests.hostile.test_socket import exchange, get
from tests.support.evidence import log_lines, report

pytestmark = pytest.mark.slow

EVERY_ANSWER = (
    b"x-content-type-options",
    b"x-frame-options",
    b"referrer-policy",
    b"cache-control",
    b"x-request-id",
)


@pytest.fixture(scope="module")
def service(database_url: str) -> Iterator[ServiceProcess]:
    env = {"DATABASE_URL": database_url, "LOG_LEVEL": "info", "HTTP_BODY_TIMEOUT": "10"}
    with ServiceProcess(env) as process:
        yield process


def rss_mib(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()  # noqa: SIM115
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def split(answer: bytes) -> tuple[int | None, dict[bytes, bytes], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", lines[0])
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
    return (int(match.group(1)) if match else None), headers, body


def assert_problem_with_every_header(answer: bytes, status: int) -> dict[str, object]:
    got, headers, body = split(answer)
    assert got == status, answer[:300]
    assert headers[b"content-type"] == b"application/problem+json", answer[:300]
    missing = [name for name in EVERY_ANSWER if name not in headers]
    assert missing == [], answer[:300]
    problem: dict[str, object] = orjson.loads(body[: int(headers[b"content-length"])])
    assert problem["status"] == status
    assert problem["request_id"] == headers[b"x-request-id"].decode()
    return problem


def served(service: ServiceProcess) -> float:
    started = time.monotonic()
    assert httpx.get(f"{service.url}/users/?limit=1", timeout=10).status_code == 200
    return time.monotonic() - started


def test_too_many_header_bytes_or_fields_is_a_431_problem(service: ServiceProcess) -> None:
    for extra in ([b"X-Big: " + b"a" * 70_000], [b"X-%d: v" % i for i in range(101)]):
        _, answer = exchange(service.port, get(b"/users/", *extra))
        problem = assert_problem_with_every_header(answer, 431)
        assert "header" in str(problem["detail"])
    _, answer = exchange(service.port, get(b"/users/?limit=1", *[b"X-%d: v" % i for i in range(90)]))
    assert split(answer)[0] == 200  # under both limits


def test_a_header_flood_keeps_memory_flat_and_others_served(service: ServiceProcess) -> None:
    assert service.process is not None
    before = rss_mib(service.process.pid)
    flood = b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(2_000_000))  # about 20 MB of headers
    closed_within = []
    slowest_other = 0.0
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /users/ HTTP/1.1\r\nHost: localhost\r\n")
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for i in range(0, len(flood), 1 << 20):
                    sock.sendall(flood[i : i + (1 << 20)])
            with contextlib.suppress(ConnectionResetError, TimeoutError):
                while sock.recv(65536):
                    pass
            closed_within.append(time.monotonic() - started)
        slowest_other = max(slowest_other, served(service))
    after = rss_mib(service.process.pid)
    report(
        "header flood",
        rss_before_mib=round(before),
        rss_after_mib=round(after),
        slowest_other_s=round(slowest_other, 3),
    )
    assert after - before < 30, f"the process grew from {before:.0f} to {after:.0f} MiB"
    assert max(closed_within) < 10
    assert slowest_other < 2.0


def test_a_trickling_body_is_answered_408_and_its_connection_freed(service: ServiceProcess) -> None:
    clients = 300
    socks = []
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", service.port))
        sock.sendall(
            b"POST /users/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 60000\r\n\r\n{"
        )
        sock.setblocking(False)
        socks.append(sock)
    started = time.monotonic()
    answers: dict[socket.socket, bytes] = {}
    closed: dict[socket.socket, float] = {}
    slowest_other = 0.0
    while len(closed) < clients and time.monotonic() - started < 20:
        for sock in socks:
            if sock in closed:
                continue
            with contextlib.suppress(OSError):
                sock.send(b" ")  # one byte every few seconds, forever
            try:
                while chunk := sock.recv(65536):
                    answers[sock] = answers.get(sock, b"") + chunk
                closed[sock] = time.monotonic() - started
            except BlockingIOError:
                pass
            except OSError:
                closed[sock] = time.monotonic() - started
        slowest_other = max(slowest_other, served(service))
        time.sleep(3)
    for sock in socks:
        sock.close()
    report(
        "trickling bodies",
        clients=clients,
        closed=len(closed),
        closed_within_s=round(max(closed.values(), default=0), 1),
        answered_408=sum(split(a)[0] == 408 for a in answers.values()),
        slowest_other_s=round(slowest_other, 3),
    )
    assert len(closed) == clients, f"{clients - len(closed)} trickling connections still open after 20 s"
    assert [split(a)[0] for a in answers.values() if split(a)[0] != 408] == []
    assert sum(split(a)[0] == 408 for a in answers.values()) > clients // 2
    assert_problem_with_every_header(next(iter(answers.values())), 408)
    assert slowest_other < 2.0


def metric_total(service: ServiceProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{service.url}/metrics").text
    total = 0.0
    for line in text.splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_client_that_leaves_is_a_disconnect_not_an_error(service: ServiceProcess) -> None:
    errors_before = metric_total(
        service, "http_server_request_duration_seconds_count", http_response_status_code="500"
    )
    bad_before = metric_total(
        service, "http_server_request_duration_seconds_count", http_response_status_code="400"
    )
    gone_before = metric_total(service, "http_server_client_disconnects_total")
    lines_before = len(log_lines(service.log_path))
    # Pipelined requests for large pages, never read, then the client closes.
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /users/?limit=1000 HTTP/1.1\r\nHost: localhost\r\n\r\n" * 200)
        time.sleep(1.0)
    # A client that leaves halfway through its body.
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.sendall(
            b"POST /users/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"username": '
        )
        time.sleep(0.5)
    time.sleep(1.0)
    new_lines = log_lines(service.log_path)[lines_before:]
    assert [line for line in new_lines if line["level"] in ("error", "critical")] == []
    assert [line for line in new_lines if "exception" in line or "Traceback" in str(line)] == []
    gone = [line for line in new_lines if line.get("client_disconnected")]
    assert gone, "no access line says the client left"
    assert all(line["level"] == "info" for line in gone)
    assert (
        metric_total(service, "http_server_request_duration_seconds_count", http_response_status_code="500")
        == errors_before
    )
    assert (
        metric_total(service, "http_server_request_duration_seconds_count", http_response_status_code="400")
        == bad_before
    )
    assert metric_total(service, "http_server_client_disconnects_total") >= gone_before + 1


def test_head_works_wherever_get_does(service: ServiceProcess) -> None:
    created = httpx.post(
        f"{service.url}/users/", json={"username": "headed", "first_name": "He", "last_name": "Ad"}
    )
    for path in (
        "/users/",
        f"/users/{created.json()['id']}",
        "/users/@headed",
        "/healthcheck",
        "/healthcheck/ready",
    ):
        got, head = httpx.get(service.url + path), httpx.head(service.url + path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"", path
        assert head.headers["content-length"] == got.headers["content-length"], path
        assert head.headers["content-type"] == got.headers["content-type"], path
    missing = httpx.head(f"{service.url}/users/{os.urandom(16).hex()[:8]}-0000-4000-8000-000000000000")
    assert (missing.status_code, missing.content) == (404, b"")
    allow = httpx.patch(f"{service.url}/users/").headers["allow"]
    assert "HEAD" in allow.split(", ")


def test_an_encoded_slash_is_not_a_separator(service: ServiceProcess) -> None:
    created = httpx.post(
        f"{service.url}/users/", json={"username": "slashed", "first_name": "Sl", "last_name": "Ash"}
    )
    user_id = created.json()["id"].encode()
    for target in (b"/users%2F" + user_id, b"/users%2f" + user_id):
        _, answer = exchange(service.port, get(target))
        assert_problem_with_every_header(answer, 404)
    _, answer = exchange(service.port, get(b"/users/" + user_id))
    assert split(answer)[0] == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /users/ HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /users/ HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        b"GET /users/ HTTP/1.1\r\nHost: bad host\r\nConnection: close\r\n\r\n",
        b"GET /users/ HTTP/1.1\r\nHost: a/b\r\nConnection: close\r\n\r\n",
    ],
    ids=["no host", "two hosts", "space in host", "slash in host"],
)
def test_host_rules_of_http_1_1(service: ServiceProcess, request_bytes: bytes) -> None:
    _, answer = exchange(service.port, request_bytes)
    problem = assert_problem_with_every_header(answer, 400)
    assert "Host" in str(problem["detail"])


def test_http_1_0_needs_no_host(service: ServiceProcess) -> None:
    _, answer = exchange(service.port, b"GET /users/?limit=1 HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_websocket_handshake_is_a_404_problem(service: ServiceProcess) -> None:
    key = base64.b64encode(os.urandom(16))
    _, answer = exchange(
        service.port,
        b"GET /users/ HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    assert_problem_with_every_header(answer, 404)


def test_the_servers_own_400_is_a_problem_with_every_header(service: ServiceProcess) -> None:
    _, answer = exchange(service.port, b"GARBAGE\r\n\r\n")
    assert_problem_with_every_header(answer, 400)
    _, answer = exchange(
        service.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc-123\r\nContent-Length: z\r\n\r\n"
    )
    problem = assert_problem_with_every_header(answer, 400)
    assert problem["request_id"] == "abc-123"
