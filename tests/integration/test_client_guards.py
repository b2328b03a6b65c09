"""What clients send that schemathesis does not: undecodable header bytes, aborted
uploads, stalled connections, and /openapi.json behind the read tokens."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import pytest
import requests
from aiohttp.test_utils import TestClient

from humtemp.server import DropClientProtocolErrors
from tests.conftest import ClientFactory, holds_no_data
from tests.support.http import HumtempProcess
from tests.support.metrics import sample, scrape
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_until

TOKENS = {"ingest_tokens": ("w",), "read_tokens": ("r",)}


async def exchange(client: TestClient, raw: bytes) -> tuple[int, bytes]:
    """Send raw bytes (no client library cleans them up); the status and body answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def request(method: str, target: str, *headers: bytes, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: t", b"Connection: close",
             *headers, b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


OBS = b'{"lab_id": "lab01", "timestamp": 1, "temp": 1, "humidity": 1}'
JSON = b"Content-Type: application/json"

HEADER_CASES = [
    # (id, raw request, status, error)
    ("auth-bytes-post", request("POST", "/observation", b"Authorization: Bearer \xff\xfe", JSON,
                                body=OBS), 401, b"unauthorized"),
    ("auth-bytes-summary", request("GET", "/summary", b"Authorization: Bearer \xff\xfe"),
     401, b"unauthorized"),
    ("auth-bytes-no-scheme", request("GET", "/summary/detail", b"Authorization: \xff\xfe"),
     401, b"unauthorized"),
    ("auth-latin1-token", request("GET", "/summary/lab?lab_id=a", b"Authorization: Bearer r\xe9"),
     401, b"unauthorized"),
    ("auth-bytes-openapi", request("GET", "/openapi.json", b"Authorization: Bearer \xc3\x28"),
     401, b"unauthorized"),
    # any Content-Type is read as JSON (as the original): the body's own error answers
    ("content-type-bytes", request("POST", "/observation", b"Authorization: Bearer w",
                                   b"Content-Type: text/\xff\xfe", body=OBS),
     422, b"invalid_observation"),
    ("charset-bytes", request("POST", "/observations", b"Authorization: Bearer w",
                              b"Content-Type: application/x-ndjson; charset=\xff", body=OBS),
     422, b"invalid_observation"),
    ("gzip-not-gzip", request("POST", "/observation", b"Authorization: Bearer w", JSON,
                              b"Content-Encoding: gzip", body=OBS), 400, b"malformed_body"),
    ("offset-5000-digits", request("GET", "/summary?offset=" + "9" * 5000,
                                   b"Authorization: Bearer r"), 422, b"invalid_parameter"),
    ("offset-percent-ff", request("GET", "/summary?offset=%ff", b"Authorization: Bearer r"),
     422, b"invalid_parameter"),
    ("lab-percent-bytes", request("GET", "/summary/lab?lab_id=%ff%fe", b"Authorization: Bearer r"),
     422, b"invalid_parameter"),
]


@pytest.fixture
def production_log_filter():  # type: ignore[no-untyped-def]
    """What humtemp serve installs: aiohttp's tracebacks of clients' protocol errors dropped."""
    aiohttp_log = logging.getLogger("aiohttp.server")
    drop = DropClientProtocolErrors()
    aiohttp_log.addFilter(drop)
    yield
    aiohttp_log.removeFilter(drop)


@pytest.mark.usefixtures("production_log_filter")
@pytest.mark.parametrize(("raw", "status", "error"), [c[1:] for c in HEADER_CASES],
                         ids=[c[0] for c in HEADER_CASES])
async def test_undecodable_header_and_query_bytes_are_4xx(
    make_client: ClientFactory, clean_shards: list[RedisServer], caplog: pytest.LogCaptureFixture,
    raw: bytes, status: int, error: bytes,
) -> None:
    client = await make_client(**TOKENS)
    got, body = await exchange(client, raw)
    assert (got, error) == (status, error) and b'"error":"' + error + b'"' in body, body
    assert len(body) < 500, "the detail quotes only the start of what was sent"
    assert "Traceback" not in caplog.text and "internal error" not in caplog.text
    assert holds_no_data(clean_shards)


def abort_uploads(port: int, count: int) -> None:
    """Clients that promise 1000 bytes, send 10 and hang up."""
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /observation HTTP/1.1\r\nHost: t\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 1000\r\n\r\n" + OBS[:10])
            time.sleep(0.05)  # the handler now waits for the rest


REQUESTS = "humtemp_http_requests_total"
OBSERVATION_POSTS = {"route": "/observation", "method": "POST"}


async def test_aborted_upload_is_recorded_as_499_without_a_traceback(
    make_client: ClientFactory, clean_shards: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """In-process (the test server cancels the handler on a hang-up); the real server's
    way (the body read fails) is in test_aborted_upload_in_a_real_server_is_499."""
    client = await make_client()
    before = {s: await scrape(client, REQUESTS, status=s, **OBSERVATION_POSTS)
              for s in ("4xx", "5xx")}
    abort_uploads(client.port, 3)

    async def counted() -> bool:
        return await scrape(client, REQUESTS, status="4xx", **OBSERVATION_POSTS) \
            - before["4xx"] == 3

    await async_wait_until(counted, timeout=5.0)
    assert await scrape(client, REQUESTS, status="5xx", **OBSERVATION_POSTS) == before["5xx"]
    assert "Traceback" not in caplog.text and "internal error" not in caplog.text
    assert holds_no_data(clean_shards)


async def test_openapi_follows_the_read_tokens(make_client: ClientFactory) -> None:
    client = await make_client(**TOKENS)
    assert (await client.get("/openapi.json")).status == 401
    assert (await client.get("/openapi.json", headers={"Authorization": "Bearer w"})).status == 401
    ok = await client.get("/openapi.json", headers={"Authorization": "Bearer r"})
    assert ok.status == 200 and "paths" in await ok.json()
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(probe)).status == 200, f"{probe} stays open"
    open_client = await make_client()
    assert (await open_client.get("/openapi.json")).status == 200, "open without tokens"


def _closed_within(sock: socket.socket, seconds: float) -> tuple[float, bytes]:
    """Read until the server closes; (seconds it took, what it sent). Fails past ``seconds``."""
    started = time.monotonic()
    sock.settimeout(seconds)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return time.monotonic() - started, received


@pytest.fixture
def slow_server(tmp_path: Path, clean_shards: list[RedisServer]):  # type: ignore[no-untyped-def]
    env = {"HUMTEMP_REDIS_URLS": ",".join(s.spec for s in clean_shards),
           "HUMTEMP_CLIENT_TIMEOUT": "1"}
    server = HumtempProcess(env, tmp_path).wait_ready()
    yield server
    assert server.terminate() == 0
    assert "Traceback" not in server.log.read_text()


def test_stalled_header_is_closed_within_the_client_timeout(slow_server: HumtempProcess) -> None:
    with socket.create_connection(("127.0.0.1", slow_server.port)) as slowloris:
        slowloris.sendall(b"POST /observation HTTP/1.1\r\nHost: t\r\nX-Pad: a")
        took, received = _closed_within(slowloris, 5.0)
    assert took < 3.0 and received == b"", (took, received)
    with socket.create_connection(("127.0.0.1", slow_server.port)) as idle:
        took, _ = _closed_within(idle, 5.0)
    assert took < 3.0, "an idle connection is closed too"


def test_stalled_body_is_answered_408_and_closed(slow_server: HumtempProcess) -> None:
    with socket.create_connection(("127.0.0.1", slow_server.port)) as stalled:
        stalled.sendall(b"POST /observation HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                        b"\r\nContent-Length: 1000\r\n\r\n" + OBS[:10])
        took, received = _closed_within(stalled, 5.0)
    assert took < 3.0, took
    assert received.startswith(b"HTTP/1.1 408") and b'"error":"request_timeout"' in received


def test_aborted_upload_in_a_real_server_is_499(slow_server: HumtempProcess) -> None:
    def requests_with(status: str) -> float:
        text = requests.get(slow_server.base + "/metrics", timeout=5).text
        return sample(text, REQUESTS, status=status, **OBSERVATION_POSTS)

    before = {s: requests_with(s) for s in ("4xx", "5xx")}
    abort_uploads(slow_server.port, 3)
    deadline = time.monotonic() + 5
    while requests_with("4xx") - before["4xx"] != 3:
        assert time.monotonic() < deadline, "aborted uploads not recorded as 4xx"
        time.sleep(0.05)
    assert requests_with("5xx") == before["5xx"]
    log = slow_server.log.read_text()
    assert "Traceback" not in log and "internal error" not in log
