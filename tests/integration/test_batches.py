"""POST /observations: JSON arrays and NDJSON, all or nothing."""

from __future__ import annotations

import json

from tests.conftest import ClientFactory, obs
from tests.support.redis_server import RedisServer


def stored_keys(shards: list[RedisServer]) -> int:
    """Buckets stored on the shards (not counting their identity records)."""
    return sum(len(s.client().keys("humtemp:b:*")) for s in shards)


async def test_json_array_batch(make_client: ClientFactory) -> None:
    client = await make_client()
    batch = [obs("lab1", temp=t, hum=50) for t in (1, 2, 3, 4)]
    resp = await client.post("/observations", json=batch)
    assert resp.status == 200 and await resp.json() == {"accepted": 4}
    body = await (await client.get("/summary/lab", params={"lab_id": "lab1", "offset": 0})).json()
    assert (body["count"], body["avg_temp"]) == (4, 2.5)


async def test_ndjson_batch(make_client: ClientFactory) -> None:
    client = await make_client()
    lines = "\n".join(json.dumps(obs("nd", temp=t, hum=10)) for t in (10, 20)) + "\n\n"
    resp = await client.post("/observations", data=lines,
                             headers={"Content-Type": "application/x-ndjson"})
    assert resp.status == 200 and await resp.json() == {"accepted": 2}
    body = await (await client.get("/summary/lab", params={"lab_id": "nd", "offset": 0})).json()
    assert body["count"] == 2 and body["avg_temp"] == 15.0


async def test_one_bad_item_rejects_the_whole_batch(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client()
    batch = [obs(f"lab{i}") for i in range(5)]
    batch[3]["humidity"] = 140
    resp = await client.post("/observations", json=batch)
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "invalid_observation"
    assert body["index"] == 3 and body["field"] == "humidity"
    assert stored_keys(clean_shards) == 0


async def test_ndjson_bad_line_names_its_index(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client()
    lines = [json.dumps(obs("a")), json.dumps(obs("b")), '{"lab_id": "c", "timestamp": 1']
    resp = await client.post("/observations", data="\n".join(lines),
                             headers={"Content-Type": "application/x-ndjson"})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "malformed_json" and body["index"] == 2
    assert stored_keys(clean_shards) == 0


async def test_batch_type_error_names_index_and_field(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client()
    batch = [obs("a"), {**obs("b"), "temp": "warm"}]
    resp = await client.post("/observations", json=batch)
    body = await resp.json()
    assert resp.status == 422 and body["index"] == 1 and body["field"] == "temp"
    assert stored_keys(clean_shards) == 0


async def test_batch_limits(make_client: ClientFactory, clean_shards: list[RedisServer]) -> None:
    client = await make_client(max_batch_items=10, max_batch_labs=3)
    too_many = [obs("a") for _ in range(11)]
    resp = await client.post("/observations", json=too_many)
    assert resp.status == 413 and (await resp.json())["error"] == "batch_too_large"
    too_many_labs = [obs(f"l{i}") for i in range(4)]
    resp = await client.post("/observations", json=too_many_labs)
    assert resp.status == 413
    empty = await client.post("/observations", json=[])
    assert empty.status == 422
    assert stored_keys(clean_shards) == 0
