"""The original service's API, answered exactly as before, over 3 real shards."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import pytest

from tests.conftest import ClientFactory, now, obs, stored_labs
from tests.support.redis_server import RedisServer


async def test_original_integration_scenario(make_client: ClientFactory) -> None:
    client = await make_client(bucket_offset=0)
    yesterday = datetime.combine(date.today() - timedelta(days=1), time.min, tzinfo=UTC)
    ts = int(yesterday.timestamp())
    for i in range(10):
        resp = await client.post("/observation", json={
            "lab_id": "lab01", "timestamp": ts, "temp": i + 1, "humidity": 10 + i + 1})
        assert resp.status == 200
        assert await resp.json() is None
        ts += 30
    resp = await client.get("/summary")
    assert resp.status == 200
    assert await resp.json() == [{"lab_id": "lab01", "avg_temp": 5.5, "avg_humidity": 15.5}]
    for offset in (0, -2):
        resp = await client.get("/summary", params={"offset": offset})
        assert resp.status == 200
        assert await resp.json() == []


async def test_summary_is_sorted_with_exactly_three_keys(make_client: ClientFactory) -> None:
    client = await make_client()
    for lab in ["zeta", "alpha", "Mid/1", "beta.2"]:
        assert (await client.post("/observation", json=obs(lab, temp=10, hum=20))).status == 200
    body = await (await client.get("/summary", params={"offset": 0})).json()
    assert [item["lab_id"] for item in body] == sorted(["zeta", "alpha", "Mid/1", "beta.2"])
    assert all(set(item) == {"lab_id", "avg_temp", "avg_humidity"} for item in body)


async def test_each_of_three_shards_holds_data(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client()
    batch = [obs(f"lab-{i:04d}", temp=i % 40, hum=i % 90) for i in range(300)]
    resp = await client.post("/observations", json=batch)
    assert resp.status == 200 and await resp.json() == {"accepted": 300}
    per_shard = [len(stored_labs(s)) for s in clean_shards]
    assert sum(per_shard) == 300
    assert all(n > 30 for n in per_shard), per_shard
    summary = await (await client.get("/summary", params={"offset": 0})).json()
    assert len(summary) == 300


async def test_per_lab_summary_has_count_min_max(make_client: ClientFactory) -> None:
    client = await make_client()
    for temp, hum in [(10.0, 30.0), (20.0, 60.0), (15.0, 45.0)]:
        resp = await client.post("/observation", json=obs("labX", temp=temp, hum=hum))
        assert resp.status == 200
    body = await (await client.get("/summary/lab", params={"lab_id": "labX", "offset": 0})).json()
    assert body["count"] == 3
    assert body["avg_temp"] == 15.0 and body["avg_humidity"] == 45.0
    assert (body["min_temp"], body["max_temp"]) == (10.0, 20.0)
    assert (body["min_humidity"], body["max_humidity"]) == (30.0, 60.0)
    assert body["partial"] is False and body["missing_shards"] == []
    params = {"lab_id": "nobody", "offset": 0}
    empty = await (await client.get("/summary/lab", params=params)).json()
    assert empty["count"] == 0 and empty["avg_temp"] is None


async def test_detailed_summary(make_client: ClientFactory) -> None:
    client = await make_client()
    await client.post("/observations", json=[obs("a", temp=1, hum=2), obs("a", temp=3, hum=4),
                                              obs("b", temp=5, hum=6)])
    body = await (await client.get("/summary/detail", params={"offset": 0})).json()
    assert body["partial"] is False
    assert body["bucket_end"] - body["bucket_start"] == 86400
    assert body["bucket_start"] <= now() < body["bucket_end"]
    assert [(lab["lab_id"], lab["count"], lab["avg_temp"]) for lab in body["labs"]] == [
        ("a", 2, 2.0), ("b", 1, 5.0)]


async def test_float_timestamp_is_accepted(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.post("/observation", json=obs("f", ts=now() - 0.5))  # type: ignore[arg-type]
    assert resp.status == 200
    body = await (await client.get("/summary/lab", params={"lab_id": "f", "offset": 0})).json()
    assert body["count"] == 1


async def test_health_and_readiness(make_client: ClientFactory) -> None:
    client = await make_client()
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    body = await ready.json()
    assert body["live_shards"] == 3 and set(body["shards"].values()) == {"up"}


# What old sensors send: curl -d (form-encoded), text/plain, no type at all... The
# original (FastAPI 0.60) read the body as JSON whatever the Content-Type said.
ORIGINAL_CONTENT_TYPES = [
    None, "application/x-www-form-urlencoded", "text/plain", "text/plain; charset=utf-8",
    "application/json", "application/json; charset=utf-8", "application/octet-stream",
    "application/xml", "not a media type",
]


async def test_observation_is_read_as_json_whatever_its_content_type(
    make_client: ClientFactory,
) -> None:
    client = await make_client()
    for i, content_type in enumerate(ORIGINAL_CONTENT_TYPES):
        body = json.dumps(obs("ctype", temp=float(i))).encode()
        headers, skip = ({}, ["Content-Type"]) if content_type is None else (
            {"Content-Type": content_type}, [])
        resp = await client.post("/observation", data=body, headers=headers,
                                 skip_auto_headers=skip)
        assert resp.status == 200, (content_type, await resp.text())
        assert await resp.json() is None
    stored = await (await client.get("/summary/lab",
                                     params={"lab_id": "ctype", "offset": 0})).json()
    assert stored["count"] == len(ORIGINAL_CONTENT_TYPES)
    assert stored["max_temp"] == len(ORIGINAL_CONTENT_TYPES) - 1


@pytest.mark.parametrize(
    ("content_type", "ndjson"),
    [("application/x-ndjson", True), ("application/x-ndjson; charset=utf-8", True),
     ("application/ndjson", True), ("application/json", False), ("text/plain", False),
     ("application/x-www-form-urlencoded", False), (None, False)],
)
async def test_a_batch_is_ndjson_only_when_its_content_type_says_so(
    make_client: ClientFactory, content_type: str | None, ndjson: bool,
) -> None:
    client = await make_client()
    items = [obs("batch-ct", temp=t) for t in (10.0, 30.0)]
    body = ("\n".join(json.dumps(i) for i in items) if ndjson else json.dumps(items)).encode()
    headers, skip = ({}, ["Content-Type"]) if content_type is None else (
        {"Content-Type": content_type}, [])
    resp = await client.post("/observations", data=body, headers=headers,
                             skip_auto_headers=skip)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"accepted": 2}
    stored = await (await client.get("/summary/lab",
                                     params={"lab_id": "batch-ct", "offset": 0})).json()
    assert (stored["count"], stored["avg_temp"]) == (2, 20.0)


async def test_ndjson_without_its_content_type_is_refused_and_stores_nothing(
    make_client: ClientFactory, clean_shards: list[RedisServer],
) -> None:
    """Without application/x-ndjson a batch is a JSON array; the error says how to send
    NDJSON instead."""
    client = await make_client()
    lines = "\n".join(json.dumps(obs("nd-plain")) for _ in range(2))
    resp = await client.post("/observations", data=lines, headers={"Content-Type": "text/plain"})
    assert resp.status == 422
    error = await resp.json()
    assert (error["error"], error["field"]) == ("invalid_observation", None)
    assert "Content-Type: application/x-ndjson" in error["detail"]
    assert all(not stored_labs(s) for s in clean_shards)
