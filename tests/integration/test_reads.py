"""The read path on real shards: original bytes, merge order, pagination, sharing,
local limits, legacy buckets, the labs-per-bucket cap."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from bench.labs import aggregate_of, lab_ids, spread_labs, store_labs
from humtemp import layout, metrics
from humtemp.api import BUCKETS, LAB_CAP, SUMMARIES
from humtemp.model import Aggregate
from tests.conftest import ClientFactory, now, obs
from tests.support.redis_server import RedisServer


def _current(client: TestClient) -> tuple[int, int]:
    """(bucket start, expire_at) of the current bucket."""
    buckets = client.app[BUCKETS]  # type: ignore[index]
    start = buckets.start(now())
    return start, start + buckets.retention * buckets.duration


def _clients(shards: list[RedisServer]) -> dict:
    return {s.name: s.client() for s in shards}


async def _body(client: TestClient, path: str, **params: object) -> bytes:
    return await (await client.get(path, params=params)).read()


def _original_summary(labs: dict[str, Aggregate]) -> bytes:
    """What the original implementation answered: msgspec JSON of the sorted list."""
    return msgspec.json.encode([
        {"lab_id": lab, "avg_temp": agg.temp_sum / agg.count,
         "avg_humidity": agg.hum_sum / agg.count}
        for lab, agg in sorted(labs.items())])


async def test_summary_bytes_equal_the_original_answer(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client()
    expected: dict[str, Aggregate] = {}
    for i, (temp, hum) in enumerate([(20.5, 40.25), (-3.125, 99.0), (1e-7, 0.1), (33.3, 66.6)]):
        for lab in (f"lab{i}", f"Z/{i}", f"a.b-{i}_x"):
            for k in range(3):
                resp = await client.post("/observation", json=obs(lab, temp=temp + k, hum=hum))
                assert resp.status == 200
            expected[lab] = Aggregate(3, 3 * temp + 3, 3 * hum, temp, temp + 2, hum, hum)
    resp = await client.get("/summary", params={"offset": 0})
    assert resp.status == 200 and resp.headers["Transfer-Encoding"] == "chunked"
    assert await resp.read() == _original_summary(expected)
    empty = await client.get("/summary")  # the previous bucket: nothing in it
    assert await empty.read() == b"[]"
    head = await client.head("/summary", params={"offset": 0})
    assert head.status == 200 and await head.read() == b""
    assert (await client.get("/summary", params={"offset": 0})).status == 200  # same socket


async def test_lab_on_several_shards_is_merged_once_in_order(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    """After a re-route a lab's data sits on two shards: one merged entry, sorted."""
    client = await make_client()
    bucket, expire = _current(client)
    a, b, c = (s.client() for s in clean_shards)
    store_labs(a, ["m1", "m3", "shared"], bucket, expire, aggregate_of(10.0, 20.0))
    store_labs(b, ["m0", "shared", "z9"], bucket, expire, aggregate_of(30.0, 40.0))
    store_labs(c, ["m2"], bucket, expire, aggregate_of(1.0, 2.0))
    body = await (await client.get("/summary/detail", params={"offset": 0})).json()
    assert [lab["lab_id"] for lab in body["labs"]] == ["m0", "m1", "m2", "m3", "shared", "z9"]
    shared = body["labs"][4]
    assert shared["count"] == 2 and shared["avg_temp"] == 20.0
    assert (shared["min_temp"], shared["max_temp"]) == (10.0, 30.0)
    assert body["next_after"] is None and body["partial"] is False


async def test_detail_pages_with_limit_and_after_cover_every_lab_once(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client()
    bucket, expire = _current(client)
    labs = lab_ids(2500, "p")
    spread_labs(_clients(clean_shards), labs, bucket, expire, aggregate_of(5.0, 6.0))
    seen: list[str] = []
    params: dict[str, str] = {"offset": "0", "limit": "700"}
    pages = 0
    while True:
        body = await (await client.get("/summary/detail", params=params)).json()
        pages += 1
        assert len(body["labs"]) <= 700
        seen += [lab["lab_id"] for lab in body["labs"]]
        if body["next_after"] is None:
            break
        assert body["next_after"] == seen[-1]
        params["after"] = body["next_after"]
    assert seen == labs and pages == 4
    exact = await (await client.get("/summary/detail", params={"offset": "0", "limit": "2500"})
                   ).json()
    assert len(exact["labs"]) == 2500 and exact["next_after"] is None
    tail = await (await client.get("/summary/detail",
                                   params={"offset": "0", "after": labs[-2]})).json()
    assert [lab["lab_id"] for lab in tail["labs"]] == [labs[-1]]


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"limit": "100001"}, "limit"),
    ({"after": "bad id"}, "after"), ({"after": ""}, "after")])
async def test_bad_paging_parameters_are_422(
    make_client: ClientFactory, params: dict[str, str], field: str
) -> None:
    client = await make_client()
    resp = await client.get("/summary/detail", params=params)
    assert resp.status == 422
    assert (await resp.json())["field"] == field


async def test_bucket_written_before_the_lab_index_is_read_whole_and_sorted(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    """Upgrade path: a bucket hash without its lab index (older humtemp) is read by
    HSCAN, so no lab disappears from the summaries after the upgrade."""
    client = await make_client()
    bucket, _ = _current(client)
    legacy = clean_shards[0].client()
    names = [f"old{i:04d}" for i in range(2100)][::-1]
    legacy.hset(layout.bucket_key(b"humtemp:", bucket),
                mapping={n: layout.pack(aggregate_of(7.0, 8.0)) for n in names})
    resp = await client.post("/observation", json=obs("new-lab"))
    assert resp.status == 200
    detail = await (await client.get("/summary/detail", params={"offset": 0})).json()
    got = [lab["lab_id"] for lab in detail["labs"]]
    assert got == sorted([*names, "new-lab"])


async def test_identical_concurrent_reads_share_one_fan_out(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client(read_cache_seconds=0.5)
    bucket, expire = _current(client)
    spread_labs(_clients(clean_shards), lab_ids(3000), bucket, expire, aggregate_of(1.0, 2.0))
    fanouts = metrics.BUCKET_READS.labels(source="shards")
    before = fanouts._value.get()
    bodies = await asyncio.gather(*(_body(client, "/summary", offset=0) for _ in range(10)))
    assert len(set(bodies)) == 1 and bodies[0].count(b"lab_id") == 3000
    assert fanouts._value.get() - before == 1
    cached = await (await client.get("/summary", params={"offset": 0})).read()
    assert cached == bodies[0] and fanouts._value.get() - before == 1
    await asyncio.sleep(0.6)  # past the cache window: a fresh fan-out
    await (await client.get("/summary", params={"offset": 0})).read()
    assert fanouts._value.get() - before == 2


async def test_cached_reads_may_lag_writes_unless_the_client_asks_for_no_cache(
    make_client: ClientFactory,
) -> None:
    """The cache trades freshness for fan-outs: within HUMTEMP_READ_CACHE_SECONDS a read
    may miss a newer write; Cache-Control: no-cache gets every acknowledged write."""
    client = await make_client(read_cache_seconds=30)
    assert (await client.post("/observation", json=obs("first"))).status == 200
    before = await _body(client, "/summary", offset=0)
    assert (await client.post("/observation", json=obs("second"))).status == 200
    assert await _body(client, "/summary", offset=0) == before  # cached
    for path in ("/summary", "/summary/detail"):
        fresh = await client.get(path, params={"offset": 0},
                                 headers={"Cache-Control": "no-cache"})
        assert b'"second"' in await fresh.read(), path
    # The fresh read replaced the cached one: later plain reads see the write too.
    assert b'"second"' in await _body(client, "/summary", offset=0)


async def test_a_read_too_large_to_share_streams_through_a_bounded_window(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client(read_cache_bytes=4096)
    bucket, expire = _current(client)
    labs = lab_ids(5000)
    spread_labs(_clients(clean_shards), labs, bucket, expire, aggregate_of(1.0, 2.0))
    bodies = await asyncio.gather(*(_body(client, "/summary", offset=0) for _ in range(3)))
    for body in bodies:
        assert [item["lab_id"] for item in msgspec.json.decode(body)] == labs


async def test_more_readers_than_connections_queue_and_no_shard_is_marked_down(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    """The local pool is a queue: 20 distinct concurrent reads on one connection per
    shard all answer whole, and writes never see a shard marked down."""
    client = await make_client(read_connections=1, read_cache_seconds=0)
    bucket, expire = _current(client)
    spread_labs(_clients(clean_shards), lab_ids(4000), bucket, expire, aggregate_of(1.0, 2.0))
    reads = [client.get("/summary/detail", params={"offset": 0, "limit": 3000 + i})
             for i in range(20)]
    answers = await asyncio.gather(*reads)
    for resp in answers:
        body = await resp.json()
        assert resp.status == 200 and body["partial"] is False and len(body["labs"]) >= 3000
    ready = await (await client.get("/readyz")).json()
    assert set(ready["shards"].values()) == {"up"}
    assert (await client.post("/observation", json=obs("after"))).status == 200


async def test_some_shards_down_keeps_the_partial_answer(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client(probe_interval=60)
    bucket, expire = _current(client)
    store_labs(clean_shards[0].client(), ["alive"], bucket, expire, aggregate_of(1.0, 2.0))
    clean_shards[2].kill()
    detail = await client.get("/summary/detail", params={"offset": 0})
    body = await detail.json()
    assert detail.status == 200 and body["partial"] is True
    assert body["missing_shards"] == [clean_shards[2].name]
    assert detail.headers["X-Humtemp-Missing-Shards"] == clean_shards[2].name
    summary = await client.get("/summary", params={"offset": 0})
    assert summary.status == 200 and summary.headers["X-Humtemp-Partial"] == "true"
    assert [item["lab_id"] for item in await summary.json()] == ["alive"]


async def test_a_shard_failing_midway_truncates_the_response(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    """Once the status line is out, a failing shard cannot become a 503: the client
    must see a broken body, never a complete-looking answer without that shard's labs."""
    client = await make_client(read_cache_seconds=0)
    bucket, expire = _current(client)
    spread_labs(_clients(clean_shards), lab_ids(30000), bucket, expire, aggregate_of(1.0, 2.0))
    reader = client.app[SUMMARIES].readers[clean_shards[1].name]  # type: ignore[index]
    pages = reader.pages

    async def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        served = 0
        async for chunk in pages(*args, **kwargs):
            yield chunk
            served += 1
            if served == 3:
                raise ConnectionResetError("shard went away")

    reader.pages = failing
    resp = await client.get("/summary", params={"offset": 0})
    assert resp.status == 200
    with pytest.raises(Exception):  # noqa: B017 - aiohttp's payload error types vary
        await resp.json()


async def _sampled_labs(client: TestClient, shards: list[RedisServer]) -> float:
    """humtemp_bucket_labs summed over these shards (the gauge is process-wide: other
    tests' shards may still have a value in it)."""
    text = await (await client.get("/metrics")).text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               for shard in shards
               if line.startswith(f'humtemp_bucket_labs{{shard="{shard.name}"}}'))


async def test_labs_per_bucket_cap_refuses_new_labs_only(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client(max_labs_per_bucket=50)
    bucket, expire = _current(client)
    existing = lab_ids(50, "cap")
    spread_labs(_clients(clean_shards), existing, bucket, expire, aggregate_of(1.0, 2.0))
    deadline = time.monotonic() + 5
    cap = client.app[LAB_CAP]  # type: ignore[index]
    while cap.labs(bucket) < 50:  # the cap works from sampled counts
        assert time.monotonic() < deadline, "humtemp_bucket_labs never reached 50"
        await asyncio.sleep(0.1)
    refused = await client.post("/observation", json=obs("brand-new"))
    assert refused.status == 429
    error = await refused.json()
    assert error["error"] == "lab_limit_reached" and error["field"] == "lab_id"
    assert "HUMTEMP_MAX_LABS_PER_BUCKET" in error["detail"] and "50" in error["detail"]
    assert int(refused.headers["Retry-After"]) > 0
    for lab in existing[:5]:
        assert (await client.post("/observation", json=obs(lab))).status == 200
    batch = await client.post("/observations", json=[obs(existing[7]), obs("another-new")])
    assert batch.status == 429
    ok = await client.post("/observations", json=[obs(existing[7]), obs(existing[8])])
    assert ok.status == 200
    one = await (await client.get("/summary/lab", params={"lab_id": existing[7], "offset": 0})
                 ).json()
    assert one["count"] == 2  # the refused batch stored nothing
    assert await _sampled_labs(client, clean_shards) == 50


async def test_loop_lag_histogram_is_exported(make_client: ClientFactory) -> None:
    client = await make_client()
    await asyncio.sleep(0.35)
    text = await (await client.get("/metrics")).text()
    count = [line for line in text.splitlines()
             if line.startswith("humtemp_event_loop_lag_seconds_count")]
    assert count and float(count[0].rsplit(" ", 1)[1]) >= 2
