"""Every bad input gets a precise 4xx JSON error, and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from humtemp.api import SUMMARIES
from humtemp.reader import Chunk
from tests.conftest import ClientFactory, holds_no_data, now
from tests.support.metrics import metric_value
from tests.support.redis_server import RedisServer

GOOD = '{"lab_id": "lab01", "timestamp": %d, "temp": 20.5, "humidity": 40}'


def body_with(field: str, raw: str) -> str:
    parts = {"lab_id": '"lab01"', "timestamp": str(now()), "temp": "20.5", "humidity": "40"}
    parts[field] = raw
    return "{" + ", ".join(f'"{k}": {v}' for k, v in parts.items()) + "}"


def without(field: str) -> str:
    data: dict[str, Any] = {"lab_id": "lab01", "timestamp": now(), "temp": 1.0, "humidity": 2.0}
    del data[field]
    return json.dumps(data)


JSON = {"Content-Type": "application/json"}

CASES: list[tuple[str, str, dict[str, str], int, str, str | None]] = [
    # (id, body, headers, status, error, field)
    ("nan", body_with("temp", "NaN"), JSON, 422, "invalid_observation", "temp"),
    ("infinity", body_with("humidity", "Infinity"), JSON, 422, "invalid_observation", "humidity"),
    ("neg-infinity", body_with("temp", "-Infinity"), JSON, 422, "invalid_observation", "temp"),
    ("overflow", body_with("temp", "1e400"), JSON, 422, "invalid_observation", "temp"),
    ("temp-string", body_with("temp", '"21.5"'), JSON, 422, "invalid_observation", "temp"),
    ("temp-bool", body_with("temp", "true"), JSON, 422, "invalid_observation", "temp"),
    ("temp-null", body_with("temp", "null"), JSON, 422, "invalid_observation", "temp"),
    ("temp-list", body_with("temp", "[1]"), JSON, 422, "invalid_observation", "temp"),
    ("ts-string", body_with("timestamp", '"yesterday"'), JSON, 422, "invalid_observation",
     "timestamp"),
    ("ts-far-future", body_with("timestamp", str(now() + 3600)), JSON, 422,
     "invalid_observation", "timestamp"),
    ("ts-too-old", body_with("timestamp", str(now() - 3 * 86400)), JSON, 422,
     "invalid_observation", "timestamp"),
    ("ts-huge", body_with("timestamp", "1" + "0" * 30), JSON, 422, "invalid_observation",
     "timestamp"),
    ("lab-empty", body_with("lab_id", '""'), JSON, 422, "invalid_observation", "lab_id"),
    ("lab-51", body_with("lab_id", '"' + "x" * 51 + '"'), JSON, 422, "invalid_observation",
     "lab_id"),
    ("lab-unicode", body_with("lab_id", '"l\\u00e4b"'), JSON, 422, "invalid_observation",
     "lab_id"),
    ("lab-colon", body_with("lab_id", '"lab:1"'), JSON, 422, "invalid_observation", "lab_id"),
    ("lab-space", body_with("lab_id", '"lab 1"'), JSON, 422, "invalid_observation", "lab_id"),
    ("lab-number", body_with("lab_id", "12"), JSON, 422, "invalid_observation", "lab_id"),
    ("temp-too-cold", body_with("temp", "-300"), JSON, 422, "invalid_observation", "temp"),
    ("humidity-over-100", body_with("humidity", "101"), JSON, 422, "invalid_observation",
     "humidity"),
    ("missing-temp", without("temp"), JSON, 422, "invalid_observation", "temp"),
    ("missing-lab", without("lab_id"), JSON, 422, "invalid_observation", "lab_id"),
    ("array-not-object", "[1, 2]", JSON, 422, "invalid_observation", None),
    ("truncated", '{"lab_id": "lab01", "timest', JSON, 400, "malformed_json", None),
    ("empty", "", JSON, 400, "malformed_json", None),
    ("deep-nesting", "[" * 100000 + "]" * 100000, JSON, 422, "invalid_observation", None),
    ("deep-in-ignored-field", body_with("lab_id", '"lab01", "x": ' + "[" * 100000 + "]" * 100000),
     JSON, 400, "malformed_json", None),
    # whatever the Content-Type, the body is read as JSON (as the original did)
    ("form-fields", "lab_id=lab01&temp=20", {"Content-Type": "application/x-www-form-urlencoded"},
     400, "malformed_json", None),
    ("text-not-json", "lab01 20.5 40", {"Content-Type": "text/plain"}, 400, "malformed_json",
     None),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "error", "field"),
    [case[1:] for case in CASES], ids=[case[0] for case in CASES],
)
async def test_bad_observation_is_rejected_and_changes_nothing(
    make_client: ClientFactory, clean_shards: list[RedisServer],
    body: str, headers: dict[str, str], status: int, error: str, field: str | None,
) -> None:
    client = await make_client()
    resp = await client.post("/observation", data=body.encode(), headers=headers)
    assert resp.status == status
    payload = await resp.json()
    assert payload["error"] == error
    assert payload["field"] == field
    assert isinstance(payload["detail"], str) and payload["detail"]
    assert "Traceback" not in payload["detail"]
    assert holds_no_data(clean_shards)


async def test_body_over_the_limit_is_413(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client()
    big = b'{"lab_id": "lab01", "pad": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    for path in ("/observation", "/observations"):
        resp = await client.post(path, data=big, headers=JSON)
        assert resp.status == 413
        assert (await resp.json())["error"] == "body_too_large"
    assert holds_no_data(clean_shards)


async def test_chunked_body_over_the_limit_is_413(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client(max_body_bytes=1024)

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(64):
            yield b"x" * 64

    resp = await client.post("/observation", data=chunks(), headers=JSON)
    assert resp.status == 413
    assert (await resp.json())["error"] == "body_too_large"
    assert holds_no_data(clean_shards)


@pytest.mark.parametrize(
    ("method", "path", "status", "error", "allow"),
    [("GET", "/nope", 404, "not_found", None),
     ("POST", "/summary/nope/deeper", 404, "not_found", None),
     ("DELETE", "/summary", 405, "method_not_allowed", "GET, HEAD"),
     ("GET", "/observation", 405, "method_not_allowed", "POST"),
     ("PUT", "/observations", 405, "method_not_allowed", "POST")],
)
async def test_unknown_routes_and_methods(
    make_client: ClientFactory, method: str, path: str, status: int, error: str,
    allow: str | None,
) -> None:
    client = await make_client()
    requests = "humtemp_http_requests_total"
    series = {"method": method, "route": "other", "status": "4xx"}
    before = metric_value(await (await client.get("/metrics")).text(), requests, **series)
    resp = await client.request(method, path)
    assert resp.status == status
    assert resp.headers.get("Allow") == allow
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert (await resp.json())["error"] == error
    after = metric_value(await (await client.get("/metrics")).text(), requests, **series)
    assert after - before == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/observation", b"{"), ("GET", "/summary", None), ("GET", "/metrics", None),
     ("GET", "/openapi.json", None), ("GET", "/readyz", None)],
)
async def test_every_answer_carries_the_safe_headers(
    make_client: ClientFactory, method: str, path: str, body: bytes | None
) -> None:
    client = await make_client()
    resp = await client.request(method, path, data=body, headers=JSON if body else None)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Server"] == "humtemp"


async def test_internal_error_is_a_bare_500_without_trace(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client()

    async def broken(*_args: object) -> AsyncIterator[Chunk]:
        raise RuntimeError("secret internals at /srv/humtemp/store.py line 42")
        yield []

    for reader in client.app[SUMMARIES].readers.values():  # type: ignore[index]
        monkeypatch.setattr(reader, "pages", broken)
    resp = await client.get("/summary")
    assert resp.status == 500
    text = await resp.text()
    assert "secret" not in text and "Traceback" not in text
    assert (await resp.json()) == {"error": "internal_error", "field": None,
                                   "detail": "internal server error"}


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [("/summary", {"offset": "abc"}, "offset"), ("/summary", {"offset": "1.5"}, "offset"),
     ("/summary", {"offset": "99999999999"}, "offset"),
     ("/summary/detail", {"offset": "-"}, "offset"),
     ("/summary/lab", {"offset": "0"}, "lab_id"),
     ("/summary/lab", {"lab_id": "bad id"}, "lab_id"),
     ("/summary/lab", {"lab_id": "ok", "offset": "x"}, "offset")],
)
async def test_bad_query_parameters(
    make_client: ClientFactory, path: str, params: dict[str, str], field: str
) -> None:
    client = await make_client()
    resp = await client.get(path, params=params)
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "invalid_parameter" and body["field"] == field
