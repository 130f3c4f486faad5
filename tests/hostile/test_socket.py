"""Hostile clients on a real socket, against the service process: slowloris connections are closed in
bounded time while everyone else is served, and oversized or malformed requests get a clean 4xx or a
closed connection, never a 5xx."""

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from loadtest.service_process import ServiceProcess
from tests.support.evidence import report

pytestmark = pytest.mark.slow

SLOW_CLIENTS = 20
CLOSE_WITHIN_S = 20.0
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def service(database_url: str) -> Iterator[ServiceProcess]:
    with ServiceProcess({"DATABASE_URL": database_url, "LOG_LEVEL": "warning"}) as process:
        yield process


def exchange(port: int, request: bytes, timeout: float = 10) -> tuple[int | None, bytes]:
    """Send raw bytes, read until the server closes: (status or None when closed without one, raw answer)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    return (int(match.group(1)) if match else None), answer


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def test_slowloris_is_cut_off_while_others_are_served(service: ServiceProcess) -> None:
    idle, dribbling = [], []
    for i in range(SLOW_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", service.port))
        sock.setblocking(False)
        if i % 2:
            sock.send(b"GET /users/ HTTP/1.1\r\nHost: localhost\r\n")
            dribbling.append(sock)
        else:
            idle.append(sock)  # connects and never says a word
    opened = time.monotonic()
    closed_after: dict[socket.socket, float] = {}
    served: list[tuple[int, float]] = []
    async with httpx.AsyncClient(base_url=service.url) as client:
        while time.monotonic() - opened < CLOSE_WITHIN_S and len(closed_after) < SLOW_CLIENTS:
            for sock in dribbling:
                if sock not in closed_after:
                    with contextlib.suppress(OSError):
                        sock.send(b"X")  # one header byte at a time, never a blank line
            for sock in idle + dribbling:
                if sock not in closed_after and closed_by_peer(sock):
                    closed_after[sock] = time.monotonic() - opened
            started = time.monotonic()
            response = await client.get("/users/?limit=5", timeout=5)
            served.append((response.status_code, time.monotonic() - started))
            await asyncio.sleep(0.25)
    for sock in idle + dribbling:
        sock.close()

    report(
        "slowloris",
        slow_clients=SLOW_CLIENTS,
        closed=len(closed_after),
        closed_within_s=round(max(closed_after.values(), default=0), 1),
        served=len(served),
        slowest_served_s=round(max(d for _, d in served), 3),
    )
    assert [s for s, _ in served if s != 200] == []
    assert max(d for _, d in served) < 1.0
    still_open_idle = [s for s in idle if s not in closed_after]
    still_open_dribbling = [s for s in dribbling if s not in closed_after]
    assert (len(still_open_idle), len(still_open_dribbling)) == (0, 0), (
        f"after {CLOSE_WITHIN_S} s the server still holds {len(still_open_idle)} silent and "
        f"{len(still_open_dribbling)} dribbling connections open"
    )


def post(path: bytes, body: bytes, *headers: bytes) -> bytes:
    """A raw POST; with a Content-Length of the body unless `headers` say how long (or how) it is."""
    if not any(h.lower().startswith((b"content-length:", b"transfer-encoding:")) for h in headers):
        headers = (b"Content-Length: %d" % len(body), *headers)
    head = [b"POST " + path + b" HTTP/1.1", b"Host: localhost", b"Content-Type: application/json", *headers]
    return b"\r\n".join([*head, b"Connection: close", b"", b""]) + body


def get(target: bytes, *headers: bytes) -> bytes:
    return b"\r\n".join(
        [b"GET " + target + b" HTTP/1.1", b"Host: localhost", *headers, b"Connection: close", b"", b""]
    )


@pytest.mark.parametrize(
    "request_bytes",
    [
        post(b"/users/", b"{" + b" " * (10 * MIB) + b"}"),
        post(b"/users/", b"{}", b"Content-Length: 1000000000000"),
        post(
            b"/users/",
            b"".join(b"10000\r\n" + b"a" * 65536 + b"\r\n" for _ in range(64)) + b"0\r\n\r\n",
            b"Transfer-Encoding: chunked",
        ),
        post(b"/users/", b"[" * 100_000 + b"]" * 100_000),
        post(b"/users/", b'{"username": "a\xff\x00"}'),
        post(b"/users/", b"{}", b"Content-Length: abc"),
        post(b"/users/", b"{}", b"Content-Length: -1"),
        post(b"/users/", b"{}", b"Content-Length: 2", b"Transfer-Encoding: chunked"),
        get(b"/users/?x=" + b"A" * 100_000),
        get(b"/users/%FF%FE", b"X-Request-ID: \xff\xfe"),
        get(b"/users/\x00"),
        get(b"/users/", b"X-Evil: a\x00b"),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,  # a TLS hello on the plain port
        b"GARBAGE\r\n\r\n",
    ],
    ids=[
        "10 MiB body with length",
        "declared 1 TB",
        "4 MiB chunked",
        "100k nested arrays",
        "invalid utf-8 and nul",
        "non-numeric length",
        "negative length",
        "length and chunked",
        "100 KB query",
        "invalid utf-8 in path and header",
        "raw nul in path",
        "nul in a header",
        "tls hello",
        "garbage",
    ],
)
def test_malformed_requests_get_a_clean_4xx_or_a_closed_connection(
    service: ServiceProcess, request_bytes: bytes
) -> None:
    status, answer = exchange(service.port, request_bytes)
    assert status is None or 400 <= status < 500, answer[:500]
    assert httpx.get(f"{service.url}/healthcheck", timeout=5).status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        get(b"/users/?x=" + b"A" * 100_000),
        post(b"/users/", b"{}", b"Content-Length: abc"),
        b"GARBAGE\r\n\r\n",
    ],
    ids=["100 KB query", "non-numeric length", "garbage"],
)
def test_the_http_servers_own_rejections_say_nosniff(service: ServiceProcess, request_bytes: bytes) -> None:
    status, answer = exchange(service.port, request_bytes)
    assert status is not None, answer[:500]
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nx-content-type-options: nosniff" in head, answer[:500]
