"""Idempotency-Key: every retry counts once, whatever failed in between (real shards).

Each case of issue 12: an out-of-memory shard, a hung shard (SIGSTOP), the same post
twice, a key reused with another body, malformed keys, concurrent duplicates; and the
answers that say what is known when a write fails without a key.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator

import pytest
from aiohttp.test_utils import TestClient

from humtemp.ring import ShardRing
from tests.conftest import ClientFactory, now, obs, stored_labs
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_until

LABS = [f"idem-{i:02d}" for i in range(60)]


def owner_of(lab: str, shards: list[RedisServer]) -> str:
    return ShardRing([s.name for s in shards]).owner(lab)


async def counts(client: TestClient) -> dict[str, int]:
    """Each lab's count in the current bucket, read fresh (not from the read cache)."""
    resp = await client.get("/summary/detail", params={"offset": 0},
                            headers={"Cache-Control": "no-cache"})
    assert resp.status == 200
    return {lab["lab_id"]: lab["count"] for lab in (await resp.json())["labs"]}


async def all_up(client: TestClient) -> bool:
    body = await (await client.get("/readyz")).json()
    return set(body["shards"].values()) == {"up"}


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


@pytest.fixture
def out_of_memory(clean_shards: list[RedisServer]) -> Iterator[Callable[[], RedisServer]]:
    """Call it (once humtemp runs) to make shard 1 reach maxmemory under noeviction: it
    then refuses every write."""
    victim = clean_shards[1].client()

    def fill() -> RedisServer:
        victim.config_set("maxmemory-policy", "noeviction")
        victim.config_set("maxmemory", 1)
        return clean_shards[1]

    yield fill
    victim.config_set("maxmemory", 0)


async def test_out_of_memory_batch_retried_with_its_key_counts_once(
    make_client: ClientFactory, clean_shards: list[RedisServer],
    out_of_memory: Callable[[], RedisServer]
) -> None:
    client = await make_client()
    full = out_of_memory()
    batch = [obs(lab, temp=10.0) for lab in LABS]
    on_victim = sum(owner_of(lab, clean_shards) == full.name for lab in LABS)
    assert 0 < on_victim < len(LABS)
    first = await client.post("/observations", json=batch, headers=keyed("batch-oom"))
    assert first.status == 503 and first.headers["Retry-After"] == "1"
    body = await first.json()
    assert body["error"] == "storage_full" and "nothing was stored" in body["detail"]
    assert body["unknown"] == 0, "a refusal is certain, not 'may or may not'"
    assert body["stored"] + body["not_stored"] == len(LABS)
    assert body["not_stored"] >= on_victim
    assert sum((await counts(client)).values()) == body["stored"]
    retry_while_full = await client.post("/observations", json=batch, headers=keyed("batch-oom"))
    assert retry_while_full.status == 503
    full.client().config_set("maxmemory", 0)
    for _ in range(2):
        retry = await client.post("/observations", json=batch, headers=keyed("batch-oom"))
        assert retry.status == 200 and await retry.json() == {"accepted": len(LABS)}
    assert await counts(client) == dict.fromkeys(LABS, 1)


async def test_out_of_memory_without_a_key_says_what_was_stored(
    make_client: ClientFactory, clean_shards: list[RedisServer],
    out_of_memory: Callable[[], RedisServer]
) -> None:
    client = await make_client()
    full = out_of_memory()
    on_victim = [lab for lab in LABS if owner_of(lab, clean_shards) == full.name]
    resp = await client.post("/observations", json=[obs(lab) for lab in LABS])
    assert resp.status == 503
    body = await resp.json()
    assert body == {"error": "storage_full", "field": None, "detail": body["detail"],
                    "stored": len(LABS) - len(on_victim), "not_stored": len(on_victim),
                    "unknown": 0}
    assert set(await counts(client)) == set(LABS) - set(on_victim)
    single = await client.post("/observation", json=obs(on_victim[0]))
    assert single.status == 503 and (await single.json())["error"] == "storage_full"
    metrics = await (await client.get("/metrics")).text()
    assert f'humtemp_shard_errors_total{{kind="oom",shard="{full.name}"}}' in metrics


async def test_hung_shard_retried_with_its_key_counts_once(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client(redis_timeout=0.5, probe_interval=0.1)
    hung = clean_shards[2]
    batch = [obs(lab, temp=20.0) for lab in LABS]
    on_hung = [lab for lab in LABS if owner_of(lab, clean_shards) == hung.name]
    assert (await client.post("/observation", json=obs("warm-up"))).status == 200
    assert hung.proc is not None
    os.kill(hung.proc.pid, signal.SIGSTOP)
    try:
        first = await client.post("/observations", json=batch, headers=keyed("batch-hung"))
        assert first.status == 503
        body = await first.json()
        assert body["error"] == "outcome_unknown" and "may or may not" in body["detail"]
        assert body["unknown"] > 0
        # A retry while the shard still hangs is refused, not re-routed: the hung shard
        # may still apply the first attempt.
        again = await client.post("/observations", json=batch, headers=keyed("batch-hung"))
        assert again.status == 503 and again.headers["Retry-After"] == "1"
        assert (await again.json())["unknown"] == 0
        single = await client.post("/observation", json=obs(on_hung[0]),
                                   headers=keyed("single-hung"))
        assert single.status == 503
        others = [s for s in clean_shards if s is not hung]
        assert not {lab for s in others for lab in stored_labs(s)} & set(on_hung)
    finally:
        os.kill(hung.proc.pid, signal.SIGCONT)
    await async_wait_until(lambda: all_up(client), what="every shard up")
    for _ in range(2):
        retry = await client.post("/observations", json=batch, headers=keyed("batch-hung"))
        assert retry.status == 200 and await retry.json() == {"accepted": len(LABS)}
    assert {lab: n for lab, n in (await counts(client)).items() if lab in LABS} == \
        dict.fromkeys(LABS, 1)


async def test_the_same_post_sent_twice_counts_once(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    """Several keys, so that some keys' home shard owns the lab and some do not."""
    client = await make_client()
    for i in range(12):
        reading = obs(f"twice-{i}", temp=float(i))
        for _ in range(2):
            resp = await client.post("/observation", json=reading, headers=keyed(f"twice-{i}"))
            assert resp.status == 200 and await resp.read() == b"null"
    assert await counts(client) == {f"twice-{i}": 1 for i in range(12)}
    plain = obs("unkeyed")
    for _ in range(2):
        assert (await client.post("/observation", json=plain)).status == 200
    assert (await counts(client))["unkeyed"] == 2, "without a key a retry counts again"


async def test_a_key_reused_with_another_body_is_refused_and_stores_nothing(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client()
    assert (await client.post("/observation", json=obs("first", temp=1.0),
                              headers=keyed("k-single"))).status == 200
    reused = await client.post("/observation", json=obs("second", temp=1.0),
                               headers=keyed("k-single"))
    assert reused.status == 422
    body = await reused.json()
    assert body["error"] == "idempotency_key_reused" and body["field"] == "Idempotency-Key"
    first_batch = [obs(lab, temp=1.0) for lab in LABS[:30]]
    other_batch = [obs(lab, temp=2.0) for lab in LABS[30:]]
    assert (await client.post("/observations", json=first_batch,
                              headers=keyed("k-batch"))).status == 200
    reused = await client.post("/observations", json=other_batch, headers=keyed("k-batch"))
    assert reused.status == 422 and (await reused.json())["error"] == "idempotency_key_reused"
    assert await counts(client) == {"first": 1, **dict.fromkeys(LABS[:30], 1)}


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, "caf\u00e9", "tab\there", '""'])
async def test_malformed_keys_get_400_and_store_nothing(
    client: TestClient, clean_shards: list[RedisServer], key: str
) -> None:
    for path, body in (("/observation", obs("malformed")), ("/observations", [obs("m2")])):
        resp = await client.post(path, json=body, headers={"Idempotency-Key": key})
        assert resp.status == 400, (path, key)
        answer = await resp.json()
        assert answer["error"] == "invalid_idempotency_key"
        assert answer["field"] == "Idempotency-Key"
    assert not any(s.client().keys("humtemp:[bik]:*") for s in clean_shards), \
        "no bucket, lab index or key record anywhere"


async def test_the_longest_key_and_a_quoted_key_are_accepted(client: TestClient) -> None:
    for key in ("k" * 255, '"quoted-key"'):
        resp = await client.post("/observation", json=obs("long"), headers=keyed(key))
        assert resp.status == 200
    resp = await client.post("/observation", json=obs("long"), headers=keyed("quoted-key"))
    assert resp.status == 200, "the quotes of a structured-field string are not part of it"
    assert (await counts(client))["long"] == 2


async def test_concurrent_duplicates_store_once(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client()
    reading = obs("concurrent", temp=3.0)
    batch = [obs(lab, temp=4.0) for lab in LABS]
    answers = await asyncio.gather(
        *(client.post("/observation", json=reading, headers=keyed("c-one")) for _ in range(20)),
        *(client.post("/observations", json=batch, headers=keyed("c-many")) for _ in range(10)),
    )
    assert [a.status for a in answers] == [200] * 30
    assert await counts(client) == {"concurrent": 1, **dict.fromkeys(LABS, 1)}


async def test_a_keyed_write_waits_for_its_own_shard_instead_of_rerouting(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client(probe_interval=0.1)
    down = clean_shards[0]
    lab = next(f"own-{i}" for i in range(1000)
               if owner_of(f"own-{i}", clean_shards) == down.name)
    down.stop()
    try:
        unkeyed = await client.post("/observation", json=obs(lab))
        assert unkeyed.status == 200, "without a key the write is re-routed"
        resp = await client.post("/observation", json=obs(lab, ts=now() - 1),
                                 headers=keyed("own"))
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"] == "shard_unavailable"
    finally:
        down.start()
    await async_wait_until(lambda: all_up(client), what="every shard up")
    resp = await client.post("/observation", json=obs(lab, ts=now() - 1), headers=keyed("own"))
    assert resp.status == 200
    assert (await counts(client))[lab] == 2


async def test_a_read_only_replica_is_a_certain_refusal(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    client = await make_client()
    replica = clean_shards[1]
    lab = next(f"ro-{i}" for i in range(1000)
               if owner_of(f"ro-{i}", clean_shards) == replica.name)
    replica.client().execute_command("REPLICAOF", "127.0.0.1", "1")
    try:
        resp = await client.post("/observation", json=obs(lab))
        assert resp.status == 503
        body = await resp.json()
        assert body["error"] == "storage_read_only" and "nothing was stored" in body["detail"]
    finally:
        replica.client().execute_command("REPLICAOF", "NO", "ONE")
    assert (await client.post("/observation", json=obs(lab))).status == 200
    assert (await counts(client))[lab] == 1


async def test_keys_and_exactly_once_mode_combine(
    make_client: ClientFactory, clean_shards: list[RedisServer]
) -> None:
    """In exactly-once mode a keyed write goes through both checks: the key stops the
    retry, the (lab, timestamp) set stops a duplicate reading sent under another key."""
    client = await make_client(exactly_once=True)
    reading = obs("both", temp=5.0)
    batch = [obs(lab, temp=6.0) for lab in LABS[:20]]
    for _ in range(2):
        assert (await client.post("/observation", json=reading,
                                  headers=keyed("eo-one"))).status == 200
        assert (await client.post("/observations", json=batch,
                                  headers=keyed("eo-many"))).status == 200
    assert (await client.post("/observation", json=reading,
                              headers=keyed("eo-other"))).status == 200
    assert await counts(client) == {"both": 1, **dict.fromkeys(LABS[:20], 1)}


async def test_a_batch_refused_before_any_part_was_sent_counts_all_of_it_not_stored(
    make_client: ClientFactory, clean_shards: list[RedisServer],
    out_of_memory: Callable[[], RedisServer]
) -> None:
    """The key's home shard is full: the first step fails, so no other part is sent and
    the 503 says every observation was certainly not stored."""
    client = await make_client()
    full = out_of_memory()
    key = next(f"home-{i}" for i in range(1000) if owner_of(f"home-{i}", clean_shards) == full.name)
    resp = await client.post("/observations", json=[obs(lab) for lab in LABS], headers=keyed(key))
    assert resp.status == 503
    body = await resp.json()
    assert body["error"] == "storage_full"
    assert (body["stored"], body["not_stored"], body["unknown"]) == (0, len(LABS), 0)
    assert await counts(client) == {}
