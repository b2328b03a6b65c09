"""A shard goes away and comes back: bounded 503s or re-routing, then recovery."""

from __future__ import annotations

import asyncio
import time

from humtemp.ring import ShardRing
from tests.conftest import ClientFactory, obs
from tests.support.metrics import metric_value
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_until


def lab_on(shard: RedisServer, shards: list[RedisServer], prefix: str = "lab") -> str:
    ring = ShardRing([s.name for s in shards])
    return next(f"{prefix}{i}" for i in range(10000) if ring.owner(f"{prefix}{i}") == shard.name)


async def test_reject_policy_answers_503_fast_then_recovers(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client(on_shard_down="reject", probe_interval=0.1)
    victim = clean_shards[1]
    lab = lab_on(victim, clean_shards)
    assert (await client.post("/observation", json=obs(lab, temp=1))).status == 200
    victim.kill()
    for _ in range(3):
        started = time.monotonic()
        resp = await client.post("/observation", json=obs(lab, temp=2))
        assert resp.status == 503
        assert time.monotonic() - started <= 2.0
        body = await resp.json()
        assert body["error"] == "shard_unavailable" and "Retry-After" in resp.headers
    ready = await (await client.get("/readyz")).json()
    assert ready["shards"][victim.name] == "down"
    victim.start()
    statuses = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        resp = await client.post("/observation", json=obs(lab, temp=3))
        statuses.append(resp.status)
        if resp.status == 200:
            break
        await asyncio.sleep(0.05)
    assert statuses[-1] == 200, statuses
    assert set(statuses) <= {200, 503}, "no 500s while the shard comes back"
    body = await (await client.get("/summary/lab", params={"lab_id": lab, "offset": 0})).json()
    # the first post survived in the AOF, the 503s were not stored, the last post was
    assert body["count"] == 2 and body["avg_temp"] == 2.0


async def test_reroute_policy_keeps_writing_and_merges_after_return(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client(probe_interval=0.1)
    victim = clean_shards[0]
    lab = lab_on(victim, clean_shards)
    assert (await client.post("/observation", json=obs(lab, temp=10))).status == 200
    reroutes = "humtemp_shard_reroutes_total"
    before = metric_value(await (await client.get("/metrics")).text(), reroutes, shard=victim.name)
    victim.kill()
    for temp in (20, 30):
        resp = await client.post("/observation", json=obs(lab, temp=temp))
        assert resp.status == 200
    batch = await client.post("/observations", json=[obs(lab, temp=40), obs("other", temp=1)])
    assert batch.status == 200
    partial = await client.get("/summary", params={"offset": 0})
    assert partial.headers["X-Humtemp-Partial"] == "true"
    assert partial.headers["X-Humtemp-Missing-Shards"] == victim.name
    detail = await (await client.get("/summary/detail", params={"offset": 0})).json()
    assert detail["partial"] is True and detail["missing_shards"] == [victim.name]
    metrics = await (await client.get("/metrics")).text()
    assert metric_value(metrics, reroutes, shard=victim.name) - before == 3
    assert metric_value(metrics, "humtemp_shard_up", shard=victim.name) == 0
    victim.start()

    async def victim_up() -> bool:
        return (await (await client.get("/readyz")).json())["shards"][victim.name] == "up"

    await async_wait_until(victim_up, what="the restarted shard marked up")
    body = await (await client.get("/summary/lab", params={"lab_id": lab, "offset": 0})).json()
    assert body["partial"] is False
    assert body["count"] == 4 and body["avg_temp"] == 25.0
    assert (body["min_temp"], body["max_temp"]) == (10.0, 40.0)


async def test_readiness_follows_min_live_shards(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client(min_live_shards=3, probe_interval=0.1)
    assert (await client.get("/readyz")).status == 200
    clean_shards[2].kill()
    # a read notices the dead shard at once
    await client.get("/summary")
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["live_shards"] == 2
    clean_shards[2].start()

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await async_wait_until(ready, what="ready again with 3 live shards")


async def test_all_shards_down_is_503_not_500(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client(probe_interval=0.1)
    for s in clean_shards:
        s.kill()
    resp = await client.post("/observation", json=obs("x"))
    assert resp.status == 503
    resp = await client.post("/observations", json=[obs("x"), obs("y")])
    assert resp.status == 503
    # No shard readable is not "no data": 503 + Retry-After on every read route.
    for path, params in (("/summary", {}), ("/summary/detail", {"offset": "0"}),
                         ("/summary/lab", {"lab_id": "x"})):
        read = await client.get(path, params=params)
        assert read.status == 503, path
        assert read.headers["Retry-After"] == "1"
        assert read.headers["X-Humtemp-Missing-Shards"].count(",") == 2
        body = await read.json()
        assert body["error"] == "no_shard_readable" and body["field"] is None
    assert (await client.get("/readyz")).status == 503
    for s in clean_shards:
        s.start()


class BlackHole:
    """A TCP port that accepts connections and never answers: a hung Redis."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.name = "blackhole"
        self.spec = f"blackhole=redis://127.0.0.1:{self.sock.getsockname()[1]}/0"

    def close(self) -> None:
        self.sock.close()


async def test_hung_shard_costs_at_most_two_seconds_by_default(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    hole = BlackHole()
    try:
        servers = [clean_shards[0], hole]
        client = await make_client(servers, on_shard_down="reject")  # type: ignore[arg-type]
        lab = lab_on(hole, servers)  # type: ignore[arg-type]
        started = time.monotonic()
        resp = await client.post("/observation", json=obs(lab))
        assert resp.status == 503
        assert time.monotonic() - started <= 2.0
        other = next(lab for lab in (f"lab{i}" for i in range(1000))
                     if lab_on_name(lab, servers) == clean_shards[0].name)  # type: ignore[arg-type]
        assert (await client.post("/observation", json=obs(other))).status == 200
        started = time.monotonic()
        summary = await client.get("/summary", params={"offset": 0})
        assert time.monotonic() - started <= 2.0
        assert summary.headers["X-Humtemp-Missing-Shards"] == "blackhole"
    finally:
        hole.close()


def lab_on_name(lab: str, servers: list[RedisServer]) -> str:
    return ShardRing([s.name for s in servers]).owner(lab)


async def test_flushed_script_cache_is_reloaded(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client()
    lab = lab_on(clean_shards[0], clean_shards)
    assert (await client.post("/observation", json=obs(lab, temp=1.0))).status == 200
    for s in clean_shards:
        s.client().script_flush()
    assert (await client.post("/observation", json=obs(lab, temp=3.0))).status == 200
    body = await (await client.get("/summary/lab", params={"lab_id": lab, "offset": 0})).json()
    assert body["count"] == 2 and body["avg_temp"] == 2.0
    summary = await (await client.get("/summary", params={"offset": 0})).json()
    assert [s["lab_id"] for s in summary] == [lab]
