"""The group-commit and read scripts against a real redis-server.

fakeredis's Lua has no cmsgpack, so these run on the real thing.
"""

from __future__ import annotations

import time

import msgspec
import pytest

from humtemp.shard import AGGREGATE, READ_SCRIPT, WRITE_SCRIPT
from tests.support.redis_server import RedisServer

pack = msgspec.msgpack.encode


@pytest.fixture
def r(clean_shards: list[RedisServer]):  # type: ignore[no-untyped-def]
    return clean_shards[0].client()


def write(r, groups, mode="agg", prefix="p:"):  # type: ignore[no-untyped-def]
    return r.eval(WRITE_SCRIPT, 0, prefix, pack(groups), mode)


def read(r, bucket, prefix="p:"):  # type: ignore[no-untyped-def]
    return msgspec.msgpack.decode(r.eval(READ_SCRIPT, 0, prefix, str(bucket)))


def test_write_merges_into_existing_aggregates_with_expiry(r) -> None:  # type: ignore[no-untyped-def]
    expire = 4102444800
    assert write(r, [("100", expire, ["a", 2, 3.0, 50.0, 1.0, 2.0, 20.0, 30.0])]) == 2
    assert write(r, [("100", expire, ["a", 1, 0.5, 10.0, 0.5, 0.5, 10.0, 10.0,
                                      "b", 1, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0])]) == 2
    assert AGGREGATE.unpack(r.get("p:b:100:a")) == (3, 3.5, 60.0, 0.5, 2.0, 10.0, 30.0)
    assert r.smembers("p:labs:100") == {b"a", b"b"}
    assert abs(time.time() + r.ttl("p:b:100:a") - expire) < 5
    assert abs(time.time() + r.ttl("p:labs:100") - expire) < 5
    rows = read(r, 100)
    assert sorted(rows[i] for i in range(0, len(rows), 8)) == ["a", "b"]
    assert read(r, 999) == [] or read(r, 999) == {}


def test_float_sums_round_trip_exactly(r) -> None:  # type: ignore[no-untyped-def]
    expire = 4102444800
    values = [0.1, 0.2, 1e-7, 123456.789]
    total = 0.0
    for v in values:
        write(r, [("1", expire, ["x", 1, v, v, v, v, v, v])])
        total += v
    rows = read(r, 1)
    assert rows[2] == total


def test_dedup_mode_drops_repeated_timestamps(r) -> None:  # type: ignore[no-untyped-def]
    expire = 4102444800
    assert write(r, [("5", expire, ["a", [10, 1.0, 2.0, 11, 3.0, 4.0, 10, 99.0, 99.0]])],
                 mode="dedup") == 2
    assert write(r, [("5", expire, ["a", [11, 50.0, 50.0, 12, 5.0, 6.0]])], mode="dedup") == 1
    rows = read(r, 5)
    assert rows[:4] == ["a", 3, 9.0, 12.0]
    assert abs(time.time() + r.ttl("p:seen:5:a") - expire) < 5
