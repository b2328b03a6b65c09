"""A flush is "outcome unknown" only when the shard did not answer in time, not when
humtemp's own event loop was stuck (issue 13, point 5), against real shards."""

from __future__ import annotations

import asyncio
import time

from humtemp.ring import ShardRing
from tests.conftest import ClientFactory, obs
from tests.support.metrics import scrape
from tests.support.redis_server import RedisServer
from tests.support.stall import stall


def lab_on(shard: RedisServer, shards: list[RedisServer]) -> str:
    ring = ShardRing([s.name for s in shards])
    return next(f"loop-{i}" for i in range(1000) if ring.owner(f"loop-{i}") == shard.name)


async def test_a_stalled_event_loop_does_not_make_a_healthy_shards_write_unknown(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    """The shard answers within 0.3 s, but the loop is stuck for 1.2 s past the 0.5 s
    write timeout: the reply is in the socket, so the write is acknowledged, not 503."""
    client = await make_client(redis_timeout=0.5, probe_interval=0.1)
    shard = clean_shards[1]
    lab = lab_on(shard, clean_shards)
    assert (await client.post("/observation", json=obs(lab))).status == 200
    errors_before = await scrape(client, "humtemp_shard_errors_total", shard=shard.name,
                                 kind="timeout")
    stalled = stall(shard, 0.3)  # the write below waits for the shard a little
    post = asyncio.ensure_future(client.post("/observation", json=obs(lab)))
    await asyncio.sleep(0.05)  # the request is read and its flush sent
    time.sleep(1.2)  # the point: the whole event loop is stuck
    resp = await post
    await asyncio.to_thread(stalled.join)
    assert resp.status == 200, await resp.text()
    assert await scrape(client, "humtemp_shard_errors_total", shard=shard.name,
                        kind="timeout") == errors_before
    ready = await (await client.get("/readyz")).json()
    assert ready["shards"][shard.name] == "up", "a busy loop is not a shard failure"
    detail = await (await client.get("/summary/lab", params={"lab_id": lab, "offset": 0},
                                      headers={"Cache-Control": "no-cache"})).json()
    assert detail["count"] == 2


async def test_a_shard_that_does_not_answer_still_times_out(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    """The same deadline with a free loop: a stalled shard is still "outcome unknown"
    after the timeout, not later than twice it."""
    client = await make_client(redis_timeout=0.5, probe_interval=0.1)
    shard = clean_shards[2]
    lab = lab_on(shard, clean_shards)
    assert (await client.post("/observation", json=obs(lab))).status == 200
    stalled = stall(shard, 1.5)
    started = time.monotonic()
    resp = await client.post("/observation", json=obs(lab))
    took = time.monotonic() - started
    await asyncio.to_thread(stalled.join)
    assert resp.status == 503 and (await resp.json())["error"] == "outcome_unknown"
    assert 0.4 < took < 1.0, took
