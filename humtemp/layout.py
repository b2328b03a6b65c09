"""The storage layout on every shard: key names and the packed aggregate.

This module is the one owner of what humtemp keeps in Redis; ``lua/write.lua`` builds
the same key names from the same prefix (its header comment points here), and
``tests/integration/test_lua_scripts.py`` checks that the two agree.

Per shard, with ``P`` the key prefix (``HUMTEMP_KEY_PREFIX``):

- ``P b:<bucket>``: hash, field = lab id, value = :data:`AGGREGATE` (7 little-endian
  doubles). One hash per bucket: a flush merges every lab it touches with one ``HMGET``
  and one ``HSET`` per 1000 labs (docs/benchmarks.md: ~2 µs of Redis CPU per merged lab).
- ``P i:<bucket>``: sorted set of the lab ids present in ``P b:<bucket>``, all with
  score 0, so ``ZRANGE … BYLEX … LIMIT`` pages through the labs in lab-id order in
  bounded chunks. Written only when a flush creates a lab in the bucket, so steady-state
  ingestion does not pay for it.
- ``P k:<idempotency key>``: the fingerprint of the request that stored its part on
  this shard under that ``Idempotency-Key`` (written in the same script call as the part).
- ``P seen:<bucket>:<lab>``: exactly-once mode's set of timestamps already counted.
- ``P shard``: the shard's identity record (its name and a random id).

Every key of a bucket expires at ``bucket_start + retention * duration``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from humtemp.model import Aggregate

AGGREGATE = struct.Struct("<7d")
"""One lab's aggregate in a bucket: n, temp sum, humidity sum, temp min, temp max,
humidity min, humidity max."""


def bucket_key(prefix: bytes, bucket: int) -> bytes:
    """The hash of every lab's aggregate in one bucket."""
    return b"%sb:%d" % (prefix, bucket)


def index_key(prefix: bytes, bucket: int) -> bytes:
    """The lab ids of one bucket in lexicographic order (a sorted set, scores all 0)."""
    return b"%si:%d" % (prefix, bucket)


def idempotency_key(prefix: bytes, key: str) -> bytes:
    """Where a shard records the fingerprint of a keyed write's part."""
    return prefix + b"k:" + key.encode()


def identity_key(prefix: bytes) -> bytes:
    """The shard's identity record (name and random id)."""
    return prefix + b"shard"


def pack(agg: Aggregate) -> bytes:
    return AGGREGATE.pack(*agg.as_tuple())


def unpack(raw: bytes) -> Aggregate:
    n, *rest = AGGREGATE.unpack(raw)
    return Aggregate(int(n), *rest)


def unpack_many(raws: Iterable[bytes]) -> Iterator[Aggregate]:
    """Aggregates of many packed values: one C call over their concatenation instead of
    a Python-level ``unpack`` per value."""
    for n, st, sh, tmin, tmax, hmin, hmax in AGGREGATE.iter_unpack(b"".join(raws)):
        yield Aggregate(int(n), st, sh, tmin, tmax, hmin, hmax)
