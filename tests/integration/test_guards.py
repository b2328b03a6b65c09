"""Shard guards with real shards: one Redis under two names, an evicting shard, a wiped
shard (docs/operations.md, "Misconfiguration is refused, data loss is surfaced")."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from humtemp.app import create_app
from humtemp.config import ConfigError, ShardSpec
from humtemp.guards import CHECK_INTERVAL
from humtemp.ring import ShardRing
from tests.conftest import ClientFactory, obs, settings_for
from tests.support.http import HumtempProcess
from tests.support.metrics import scrape
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_until


async def metric(client: TestClient, name: str, shard: str) -> float:
    return await scrape(client, name, shard=shard)


def alias_env(shard: RedisServer, other: RedisServer) -> str:
    """Three names, two of which (alpha, gamma) reach one Redis database."""
    return (f"alpha=redis://127.0.0.1:{shard.port}/0,beta={other.url},"
            f"gamma=redis://localhost:{shard.port}/0")


def test_one_redis_under_two_names_refuses_to_start_naming_both(
    tmp_path: Path, clean_shards: list[RedisServer]
) -> None:
    env = {"HUMTEMP_REDIS_URLS": alias_env(clean_shards[0], clean_shards[1])}
    server = HumtempProcess(env, tmp_path)
    try:
        code = server.proc.wait(timeout=20)
    finally:
        server.kill()
    lines = [line for line in server.log.read_text().splitlines() if "refusing to start" in line]
    assert code == 78, "EX_CONFIG: refused, not crashed"
    assert len(lines) == 1, server.log.read_text()
    assert "alpha" in lines[0] and "gamma" in lines[0] and "beta" not in lines[0]
    assert "Traceback" not in server.log.read_text()


async def test_alias_is_refused_also_when_the_record_already_exists(
    clean_shards: list[RedisServer],
) -> None:
    """Second start: the record from the first (naming alpha) is read under both names."""
    first = settings_for(clean_shards[:1])
    app = create_app(first, (ShardSpec("alpha", f"redis://127.0.0.1:{clean_shards[0].port}/0"),))
    async with TestClient(TestServer(app)):
        pass
    specs = (ShardSpec("alpha", f"redis://127.0.0.1:{clean_shards[0].port}/0"),
             ShardSpec("gamma", f"redis://localhost:{clean_shards[0].port}/0"))
    client = TestClient(TestServer(create_app(first, specs)))
    with pytest.raises(ConfigError, match="alpha and gamma"):
        await client.start_server()
    await client.close()


async def test_evicting_shard_is_refused_at_start(
    make_client: ClientFactory, clean_shards: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    evicting = clean_shards[0]
    evicting.client().config_set("maxmemory-policy", "allkeys-lru")
    try:
        client = await make_client()
        ready = await (await client.get("/readyz")).json()
        assert ready["shards"][evicting.name] == "down"
        assert "allkeys-lru" in ready["refused"][evicting.name]
        assert f"shard {evicting.name} refused" in caplog.text and "allkeys-lru" in caplog.text
        for i in range(30):
            assert (await client.post("/observation", json=obs(f"lab{i}"))).status == 200
        assert evicting.client().keys("humtemp:b:*") == [], "nothing written to it"
    finally:
        evicting.client().config_set("maxmemory-policy", "noeviction")


async def test_policy_changed_at_run_time_takes_the_shard_out_then_back(
    make_client: ClientFactory, clean_shards: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client()
    evicting = clean_shards[1]

    async def state() -> str:
        return (await (await client.get("/readyz")).json())["shards"][evicting.name]

    assert await state() == "up"
    evicting.client().config_set("maxmemory-policy", "allkeys-lru")
    try:
        await async_wait_until(lambda: _is(state, "down"), timeout=5.0)
        assert "allkeys-lru" in caplog.text
        for i in range(30):
            assert (await client.post("/observation", json=obs(f"lab{i}"))).status == 200
        assert evicting.client().keys("humtemp:b:*") == [], "writes went elsewhere"
    finally:
        evicting.client().config_set("maxmemory-policy", "noeviction")
    await async_wait_until(lambda: _is(state, "up"), timeout=5.0)
    assert (await (await client.get("/readyz")).json())["refused"] == {}


async def _is(state: Callable[[], Awaitable[str]], want: str) -> bool:
    return await state() == want


async def test_memory_used_ratio_is_exported_when_maxmemory_is_set(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    shard = clean_shards[2]
    shard.client().config_set("maxmemory", "100mb")
    try:
        client = await make_client()

        async def sampled() -> bool:
            return 0 < await metric(client, "humtemp_shard_memory_used_ratio", shard.name) < 0.5

        await async_wait_until(sampled, timeout=5.0)
    finally:
        shard.client().config_set("maxmemory", "0")


async def test_wiped_shard_is_counted_logged_and_named_in_detail(
    make_client: ClientFactory, clean_shards: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client()
    wiped = clean_shards[0]
    name = "humtemp_shard_resets_total"
    before = {s.name: await metric(client, name, s.name) for s in clean_shards}
    detail = await (await client.get("/summary/detail", params={"offset": 0})).json()
    assert detail["reset_shards"] == []
    wiped.client().flushall()

    async def counted() -> bool:
        return await metric(client, name, wiped.name) - before[wiped.name] == 1

    await async_wait_until(counted, timeout=5.0)
    for other in clean_shards[1:]:
        assert await metric(client, name, other.name) == before[other.name]
    assert f"shard {wiped.name} was reset" in caplog.text
    assert wiped.client().hget("humtemp:shard", "name") == wiped.name.encode(), "re-created"
    fresh = {"Cache-Control": "no-cache"}  # not the answer cached before the wipe
    detail = await (await client.get("/summary/detail", params={"offset": 0},
                                      headers=fresh)).json()
    assert detail["reset_shards"] == [wiped.name]
    later = await (await client.get("/summary/detail", params={"offset": 1},
                                     headers=fresh)).json()
    assert later["reset_shards"] == [], "the next bucket started after the reset"
    assert (await client.post("/observation", json=obs())).status == 200, "carries on"
    assert await metric(client, name, wiped.name) - before[wiped.name] == 1, "counted once"


async def test_shard_holding_another_shards_record_is_refused(
    make_client: ClientFactory, clean_shards: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    foreign = clean_shards[2]
    foreign.client().hset("humtemp:shard", mapping={"name": "elsewhere", "id": "x" * 32,
                                                    "created": "1"})
    client = await make_client()
    ready = await (await client.get("/readyz")).json()
    assert ready["shards"][foreign.name] == "down"
    assert "elsewhere" in ready["refused"][foreign.name]
    assert "names shard 'elsewhere'" in caplog.text


async def test_two_pods_see_one_wipe_once_and_both_name_it(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    """Whichever pod notices first re-creates the record with the reset time; the other
    reads that time from the record (both apps share this process's counter)."""
    pods = [await make_client(), await make_client()]
    wiped = clean_shards[1]
    name = "humtemp_shard_resets_total"
    before = await metric(pods[0], name, wiped.name)
    wiped.client().flushall()

    async def both_name_it() -> bool:
        for pod in pods:
            detail = await (await pod.get("/summary/detail", params={"offset": 0})).json()
            if detail["reset_shards"] != [wiped.name]:
                return False
        return True

    await async_wait_until(both_name_it, timeout=5.0)
    # Nothing to poll for: the claim is that a later check round does NOT count again.
    await asyncio.sleep(CHECK_INTERVAL * 1.5)
    assert await metric(pods[0], name, wiped.name) - before == 1


async def test_shard_back_without_its_aof_is_counted_as_reset(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    """The issue's case: killed, its AOF lost with its volume, restarted empty. The probe
    that brings it back notices before it serves again."""
    client = await make_client()
    lost = clean_shards[2]
    name = "humtemp_shard_resets_total"
    before = await metric(client, name, lost.name)
    lost.kill()
    shutil.rmtree(lost.directory / "appendonlydir", ignore_errors=True)  # Redis 7
    (lost.directory / "appendonly.aof").unlink(missing_ok=True)  # Redis 6

    async def down() -> bool:  # a read notices the dead shard
        ready = await (await client.get("/summary/detail", params={"offset": 0})).json()
        return lost.name in ready["missing_shards"]

    await async_wait_until(down, timeout=5.0)
    lost.start()

    async def counted_and_up() -> bool:
        ready = await (await client.get("/readyz")).json()
        return ready["shards"][lost.name] == "up" and \
            await metric(client, name, lost.name) - before == 1

    await async_wait_until(counted_and_up, timeout=10.0)


async def test_a_shard_full_at_start_stays_readable_and_takes_its_record_when_freed(
    make_client: ClientFactory, clean_shards: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A shard at maxmemory (noeviction) cannot take its identity record, nor any write.
    It is not taken out of service for that: its data stays readable, writes to it are
    answered storage_full, and the record is written once memory is freed."""
    full = clean_shards[1]
    lab = next(f"full-{i}" for i in range(1000)
               if ShardRing([s.name for s in clean_shards]).owner(f"full-{i}") == full.name)
    writer = await make_client()
    assert (await writer.post("/observation", json=obs(lab))).status == 200
    await writer.close()
    full.client().delete("humtemp:shard")  # as on a shard humtemp has not seen yet
    full.client().config_set("maxmemory-policy", "noeviction")
    full.client().config_set("maxmemory", 1)
    try:
        client = await make_client()
        ready = await (await client.get("/readyz")).json()
        assert ready["shards"][full.name] == "up", ready
        assert "cannot be written" in caplog.text
        detail = await (await client.get("/summary/lab",
                                         params={"lab_id": lab, "offset": 0})).json()
        assert detail["count"] == 1 and detail["partial"] is False, "its data is readable"
        resp = await client.post("/observation", json=obs(lab))
        assert resp.status == 503 and (await resp.json())["error"] == "storage_full"
    finally:
        full.client().config_set("maxmemory", 0)

    async def recorded() -> bool:
        return full.client().hget("humtemp:shard", "name") == full.name.encode()

    await async_wait_until(recorded, timeout=5.0)
    assert (await client.post("/observation", json=obs(lab))).status == 200
