"""Fill shards with many labs quickly, in humtemp's real storage layout (humtemp.layout):
pipelined HSET + ZADD per shard instead of one HTTP write per lab."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from humtemp import layout
from humtemp.model import Aggregate
from humtemp.ring import ShardRing

PIPELINE_LABS = 2000


def lab_ids(count: int, prefix: str = "lab") -> list[str]:
    return [f"{prefix}{i:07d}" for i in range(count)]


def aggregate_of(temp: float, hum: float) -> Aggregate:
    """One observation's aggregate."""
    return Aggregate(1, temp, hum, temp, temp, hum, hum)


def store_labs(client: redis.Redis, labs: Iterable[str], bucket: int, expire_at: int,
               agg: Aggregate, prefix: bytes = b"humtemp:") -> int:
    """Write ``agg`` for every lab into ``bucket`` on one shard; returns labs written."""
    hash_key, index_key = layout.bucket_key(prefix, bucket), layout.index_key(prefix, bucket)
    packed = layout.pack(agg)
    written = 0
    batch: list[str] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        pipe.hset(hash_key, mapping=dict.fromkeys(batch, packed))
        pipe.zadd(index_key, dict.fromkeys(batch, 0))
        pipe.execute()

    for lab in labs:
        batch.append(lab)
        if len(batch) == PIPELINE_LABS:
            flush()
            written += len(batch)
            batch = []
    if batch:
        flush()
        written += len(batch)
    client.expireat(hash_key, expire_at)
    client.expireat(index_key, expire_at)
    return written


def spread_labs(clients: dict[str, redis.Redis], labs: Sequence[str], bucket: int,
                expire_at: int, agg: Aggregate, prefix: bytes = b"humtemp:") -> dict[str, int]:
    """Write every lab to the shard the ring routes it to (shards keyed by their names)."""
    ring = ShardRing(clients)
    by_shard: dict[str, list[str]] = {name: [] for name in clients}
    for lab in labs:
        by_shard[ring.owner(lab)].append(lab)
    return {name: store_labs(clients[name], owned, bucket, expire_at, agg, prefix)
            for name, owned in by_shard.items()}
